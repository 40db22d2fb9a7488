"""ScienceQA loader: official problems.json / pid_splits.json layout, text-only and with images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuner.data.scienceqa import (
    IGNORE_INDEX,
    SAMPLE_PROBLEMS,
    ScienceQADataError,
    ScienceQADataset,
    collate_scienceqa,
    load_scienceqa,
    write_sample_release,
)


@pytest.fixture
def release(tmp_path) -> Path:
    return write_sample_release(tmp_path / "scienceqa")


def test_text_only_split_builds_the_qcm_prompt_and_answer(release):
    problems = load_scienceqa(release / "problems.json", release / "pid_splits.json", "train")
    assert [p.pid for p in problems] == ["1", "2"]
    assert all(p.image is None for p in problems)
    assert problems[0].prompt() == (
        "Context: Her words were a knife.\n"
        "Question: Which figure of speech is used in this text?\n"
        "Options: (A) simile (B) metaphor\n"
        "Answer:"
    )
    assert problems[0].target() == " The answer is B."
    assert problems[1].context() == "N/A" and problems[1].grade == 4 and problems[1].answer_letter == "A"


def test_image_split_finds_the_files_and_prepares_clip_pixels(release, tiny_tokenizer):
    problems = load_scienceqa(release / "problems.json", release / "pid_splits.json", "train", image_root=release / "images")
    assert problems[0].image is None
    assert problems[1].image == release / "images" / "train" / "2" / "image.png"
    dataset = ScienceQADataset(problems, tiny_tokenizer, max_length=128, image_size=32)
    text_item, image_item = dataset[0], dataset[1]
    assert text_item["has_image"] is False and torch.equal(text_item["pixel_values"], torch.zeros(3, 32, 32))
    pixels = image_item["pixel_values"]
    assert image_item["has_image"] is True and pixels.shape == (3, 32, 32)
    # A flat colour (80, 120, 200) normalised with CLIP's mean and std, channel by channel.
    expected = (torch.tensor([80, 120, 200]) / 255 - torch.tensor([0.4815, 0.4578, 0.4082])) / torch.tensor(
        [0.2686, 0.2613, 0.2758]
    )
    torch.testing.assert_close(pixels.mean(dim=(1, 2)), expected, atol=2e-3, rtol=0)

    batch = collate_scienceqa([text_item, image_item], pad_token_id=tiny_tokenizer.pad_token_id)
    assert batch["adapter_image_mask"].tolist() == [False, True]
    assert batch["adapter_pixel_values"].shape == (2, 3, 32, 32)
    labelled = batch["labels"][1][batch["labels"][1] != IGNORE_INDEX]
    assert tiny_tokenizer.decode(labelled) == " The answer is A." + tiny_tokenizer.eos_token
    assert batch["attention_mask"][0].sum() == len(text_item["input_ids"])


def test_long_prompts_are_cut_from_the_left_keeping_the_answer(release, tiny_tokenizer):
    problems = load_scienceqa(release / "problems.json", release / "pid_splits.json", "train")
    full = ScienceQADataset(problems, tiny_tokenizer, max_length=512)[0]
    item = ScienceQADataset(problems, tiny_tokenizer, max_length=len(full["input_ids"]) - 10)[0]
    assert len(item["input_ids"]) == len(full["input_ids"]) - 10
    text = tiny_tokenizer.decode(item["input_ids"])
    assert "Her words" not in text and text.startswith(tiny_tokenizer.bos_token)
    assert text.endswith("Options: (A) simile (B) metaphor\nAnswer: The answer is B." + tiny_tokenizer.eos_token)
    assert item["labels"][-6:] == full["labels"][-6:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, s: p["2"].update(answer=3), r"problems.json:\d+: pid 2 field answer: index 3 is outside its 3 choices"),
        (lambda p, s: p["1"].pop("question"), r"problems.json:\d+: pid 1 field question: expected str, got None"),
        (lambda p, s: s["train"].append("99"), r"pid_splits.json: split 'train' lists pid '99', which .*problems.json lacks"),
    ],
)
def test_bad_records_are_reported_with_file_line_pid_and_field(tmp_path, change, message):
    problems = json.loads(json.dumps(SAMPLE_PROBLEMS))
    splits = {"train": ["1", "2"], "val": ["3"]}
    change(problems, splits)
    root = write_sample_release(tmp_path / "bad", problems, splits)
    with pytest.raises(ScienceQADataError, match=message):
        load_scienceqa(root / "problems.json", root / "pid_splits.json", "train", image_root=root / "images")


def test_missing_image_unknown_split_and_broken_json_fail_clearly(tmp_path):
    root = write_sample_release(tmp_path / "noimages", images=False)
    with pytest.raises(ScienceQADataError, match=r"pid 2 field image: .*images/train/2/image.png does not exist"):
        load_scienceqa(root / "problems.json", root / "pid_splits.json", "train", image_root=root / "images")
    with pytest.raises(ScienceQADataError, match=r"no split 'dev'; it has train, val"):
        load_scienceqa(root / "problems.json", root / "pid_splits.json", "dev")
    (root / "problems.json").write_text('{\n  "1": {"question": "x",\n}')
    with pytest.raises(ScienceQADataError, match=r"problems.json:3: invalid JSON"):
        load_scienceqa(root / "problems.json", root / "pid_splits.json", "train")


def test_real_split_and_caption_files_load(shared_data, tmp_path):
    real = shared_data / "scienceqa"
    pids = json.loads((real / "pid_splits.json").read_text())["minitest"]
    problems = {pid: dict(SAMPLE_PROBLEMS["2"], split="test") for pid in pids}
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    loaded = load_scienceqa(tmp_path / "problems.json", real / "pid_splits.json", "minitest",
                            captions_path=real / "captions.json")
    assert len(loaded) == len(pids) == 424
    captioned = [p for p in loaded if p.caption]
    assert captioned and captioned[0].context(use_caption=True) == captioned[0].caption
    assert loaded[0].context(use_caption=False) == "N/A"
