"""ScienceQA (Lu et al., NeurIPS 2022) for training LLaMA-Adapter, text-only or with images.

Reads the official release layout:
- `problems.json`: {pid: {question, choices, answer (index), hint, image (file name or null),
  subject, grade ("gradeN"), lecture, solution, split, ...}};
- `pid_splits.json`: {split: [pid, ...]} (train/val/test/minitrain/...);
- images at `<image_root>/<split>/<pid>/<image>` (the release's `images/` folder);
- optionally `captions.json` ({"captions": {pid: caption}}) to put image captions into the
  context of text-only runs, as the ScienceQA paper's text baselines do.

problems.json and the images are not redistributable here: the user passes their folder (see
https://github.com/lupantech/ScienceQA, "Download the dataset"). Each example becomes the paper's
QCM -> A prompt ("Context / Question / Options / Answer:") with target "The answer is X.", and,
when images are used, a pixel tensor prepared as CLIP expects (resize the short side, centre
crop, CLIP mean/std) with transformers' PIL image processor (no torchvision needed).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

IGNORE_INDEX = -100
OPTION_LETTERS = string.ascii_uppercase


class ScienceQADataError(ValueError):
    """Bad ScienceQA input, reported as `file:line: pid <pid> field <name>: problem`."""


@dataclass(frozen=True)
class ScienceQAProblem:
    pid: str
    question: str
    choices: tuple[str, ...]
    answer: int
    """Index of the correct choice."""
    hint: str
    image: Path | None
    """The image file, or None for a text-only problem (or when images are not used)."""
    caption: str
    subject: str
    grade: int | None
    lecture: str
    solution: str
    split: str

    @property
    def answer_letter(self) -> str:
        return OPTION_LETTERS[self.answer]

    def context(self, use_caption: bool = False) -> str:
        """The hint, plus the image caption when asked and available; "N/A" when empty."""
        parts = [self.hint.strip()]
        if use_caption and self.caption:
            parts.append(self.caption.strip())
        return " ".join(p for p in parts if p) or "N/A"

    def prompt(self, use_caption: bool = False) -> str:
        options = " ".join(f"({OPTION_LETTERS[i]}) {choice}" for i, choice in enumerate(self.choices))
        return (
            f"Context: {self.context(use_caption)}\n"
            f"Question: {self.question.strip()}\n"
            f"Options: {options}\n"
            "Answer:"
        )

    def target(self) -> str:
        return f" The answer is {self.answer_letter}."


def load_scienceqa(
    problems_path: str | Path,
    splits_path: str | Path,
    split: str,
    image_root: str | Path | None = None,
    captions_path: str | Path | None = None,
) -> list[ScienceQAProblem]:
    """The problems of one split, in pid_splits.json order.

    Args:
        problems_path: the release's problems.json.
        splits_path: the release's pid_splits.json.
        split: a key of pid_splits.json ("train", "val", "test", "minitrain", ...).
        image_root: folder holding `<split>/<pid>/<image>`; None loads the split text-only
            (problems keep `image=None`).
        captions_path: captions.json, for `ScienceQAProblem.context(use_caption=True)`.

    Raises:
        ScienceQADataError: a file is missing or malformed, the split is unknown, a pid of the
            split is missing from problems.json, a field is missing or wrong, or an image file
            named by a problem does not exist. The message names the file, line, pid and field.
    """
    problems_path, splits_path = Path(problems_path), Path(splits_path)
    problems_text, problems = _read_json(problems_path)
    _, splits = _read_json(splits_path)
    if split not in splits:
        raise ScienceQADataError(f"{splits_path}: no split {split!r}; it has {', '.join(sorted(splits))}")
    captions = {}
    if captions_path is not None:
        captions = _read_json(Path(captions_path))[1].get("captions", {})
    loaded = []
    for pid in splits[split]:
        if pid not in problems:
            raise ScienceQADataError(f"{splits_path}: split {split!r} lists pid {pid!r}, which {problems_path} lacks")
        where = f"{problems_path}:{_line_of_key(problems_text, pid)}: pid {pid}"
        loaded.append(_problem(pid, problems[pid], where, image_root, captions.get(pid, "")))
    return loaded


def _read_json(path: Path) -> tuple[str, Any]:
    if not path.is_file():
        raise ScienceQADataError(f"{path}: file not found (ScienceQA files come from https://github.com/lupantech/ScienceQA)")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScienceQADataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ScienceQADataError(f"{path}:1: expected a JSON object at the top level")
    return text, data


def _line_of_key(text: str, key: str) -> int:
    offset = text.find(f'"{key}"')
    return text.count("\n", 0, offset) + 1 if offset >= 0 else 1


def _field(record: dict, name: str, kind: type, where: str, optional: bool = False) -> Any:
    value = record.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ScienceQADataError(f"{where} field {name}: expected {kind.__name__}, got {value!r}")
    return value


def _problem(pid: str, record: Any, where: str, image_root: str | Path | None, caption: str) -> ScienceQAProblem:
    if not isinstance(record, dict):
        raise ScienceQADataError(f"{where}: expected an object, got {type(record).__name__}")
    choices = _field(record, "choices", list, where)
    if not 2 <= len(choices) <= len(OPTION_LETTERS) or not all(isinstance(c, str) for c in choices):
        raise ScienceQADataError(f"{where} field choices: expected 2 or more strings, got {choices!r}")
    answer = _field(record, "answer", int, where)
    if not 0 <= answer < len(choices):
        raise ScienceQADataError(f"{where} field answer: index {answer} is outside its {len(choices)} choices")
    split = _field(record, "split", str, where)
    image = None
    image_name = _field(record, "image", str, where, optional=True)
    if image_name and image_root is not None:
        image = Path(image_root) / split / pid / image_name
        if not image.is_file():
            raise ScienceQADataError(f"{where} field image: {image} does not exist")
    grade = _field(record, "grade", str, where, optional=True)
    return ScienceQAProblem(
        pid=pid,
        question=_field(record, "question", str, where),
        choices=tuple(choices),
        answer=answer,
        hint=_field(record, "hint", str, where, optional=True) or "",
        image=image,
        caption=caption,
        subject=_field(record, "subject", str, where, optional=True) or "",
        grade=int(grade[len("grade"):]) if grade and grade.startswith("grade") and grade[5:].isdigit() else None,
        lecture=_field(record, "lecture", str, where, optional=True) or "",
        solution=_field(record, "solution", str, where, optional=True) or "",
        split=split,
    )


def clip_image_processor(image_size: int):
    """transformers' PIL-backed CLIP preprocessing for square `image_size` inputs."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


class ScienceQADataset(torch.utils.data.Dataset):
    """Tokenised ScienceQA examples: loss on the answer (and EOS) only, pixels for image problems.

    Items hold `input_ids` and `labels` (lists), and, when `image_size` is given, `pixel_values`
    [3, S, S] (zeros for problems without an image) and `has_image`. `collate_scienceqa` turns a
    list of items into the keyword arguments of a multimodal LLaMA-Adapter forward.
    """

    def __init__(
        self,
        problems: Sequence[ScienceQAProblem],
        tokenizer,
        max_length: int = 512,
        image_size: int | None = None,
        use_caption: bool = False,
    ) -> None:
        self.problems = list(problems)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.image_size = image_size
        self.use_caption = use_caption
        self.processor = clip_image_processor(image_size) if image_size else None

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, index: int) -> dict[str, Any]:
        problem = self.problems[index]
        prompt_ids = self.tokenizer(problem.prompt(self.use_caption), add_special_tokens=False).input_ids
        target_ids = self.tokenizer(problem.target(), add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        # Keep the answer: cut the prompt from the left (the context) when too long.
        budget = self.max_length - len(bos) - len(target_ids)
        if budget < 1:
            raise ScienceQADataError(f"pid {problem.pid}: max_length {self.max_length} leaves no room for the prompt")
        prompt_ids = prompt_ids[-budget:]
        item: dict[str, Any] = {
            "input_ids": bos + prompt_ids + target_ids,
            "labels": [IGNORE_INDEX] * (len(bos) + len(prompt_ids)) + target_ids,
        }
        if self.processor is not None:
            item["has_image"] = problem.image is not None
            item["pixel_values"] = self.pixels(problem.image)
        return item

    def pixels(self, image: Path | None) -> torch.Tensor:
        """[3, S, S] CLIP-normalised pixels of an image file; zeros (never looked at) when None."""
        if image is None:
            return torch.zeros(3, self.image_size, self.image_size)
        from PIL import Image

        with Image.open(image) as opened:
            rgb = opened.convert("RGB")
        return self.processor(images=rgb, return_tensors="pt").pixel_values[0]


def collate_scienceqa(items: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; image items add `adapter_pixel_values` and `adapter_image_mask`.

    The keys are exactly the keyword arguments of `model(**batch)` for a (multimodal)
    LLaMA-Adapter model. Packing several examples into one row is not supported with images:
    the image feature is per row.
    """
    longest = max(len(item["input_ids"]) for item in items)
    input_ids = torch.full((len(items), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        attention_mask[row, :n] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if "pixel_values" in items[0]:
        from tuner.adapters.llama_adapter import IMAGE_MASK_KWARG, PIXEL_VALUES_KWARG

        batch[PIXEL_VALUES_KWARG] = torch.stack([item["pixel_values"] for item in items])
        batch[IMAGE_MASK_KWARG] = torch.tensor([item["has_image"] for item in items], dtype=torch.bool)
    return batch


# Three problems in the release's format: text-only (1), with an image (2, 3); splits train and val.
SAMPLE_PROBLEMS = {
    "1": {
        "question": "Which figure of speech is used in this text?", "choices": ["simile", "metaphor"],
        "answer": 1, "hint": "Her words were a knife.", "image": None, "task": "closed choice",
        "grade": "grade7", "subject": "language science", "topic": "figurative-language",
        "category": "Literary devices", "skill": "Classify figures of speech", "lecture": "A metaphor ...",
        "solution": "The text uses a metaphor.", "split": "train",
    },
    "2": {
        "question": "Which animal's feet are also adapted for swimming?", "choices": ["duck", "camel", "owl"],
        "answer": 0, "hint": "", "image": "image.png", "task": "closed choice", "grade": "grade4",
        "subject": "natural science", "topic": "biology", "category": "Adaptations", "skill": "Animal adaptations",
        "lecture": "", "solution": "Webbed feet help ducks swim.", "split": "train",
    },
    "3": {
        "question": "What is the capital of Utah?", "choices": ["Provo", "Salt Lake City", "Denver", "Boise"],
        "answer": 1, "hint": "", "image": "image.png", "task": "closed choice", "grade": "grade3",
        "subject": "social science", "topic": "geography", "category": "State capitals", "skill": "Capitals",
        "lecture": "", "solution": "", "split": "val",
    },
}


def write_sample_release(
    root: str | Path, problems: dict | None = None, splits: dict | None = None, images: bool = True
) -> Path:
    """Write a miniature ScienceQA release in the official layout (problems.json, pid_splits.json,
    images/<split>/<pid>/image.png as real PNG files) for tests and demos; returns `root`."""
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    problems = SAMPLE_PROBLEMS if problems is None else problems
    (root / "problems.json").write_text(json.dumps(problems, indent=4))
    (root / "pid_splits.json").write_text(json.dumps(splits or {"train": ["1", "2"], "val": ["3"]}, indent=2))
    for pid, problem in problems.items():
        if images and problem.get("image"):
            folder = root / "images" / problem["split"] / pid
            folder.mkdir(parents=True, exist_ok=True)
            color = (40 * int(pid) % 256, 120, 200)
            Image.new("RGB", (48, 36), color).save(folder / problem["image"])
    return root
