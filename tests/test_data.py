"""Instruction data: formats, loss masks, bad input, packing and the step plan."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tuner.data.batching import StepPlan, attention_inputs, collate, pack_rows, token_losses
from tuner.data.examples import IGNORE_INDEX, load_examples
from tuner.data.records import DataError
from tuner.data.templates import ALPACA_PROMPT_NO_INPUT, format_prompt


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def alpaca(i: int, output: str | None = None) -> dict:
    return {"instruction": f"Write a function that adds {i} to x.", "input": "",
            "output": output if output is not None else f"def add_{i}(x):\n    return x + {i}\n"}


def test_loss_is_taken_on_response_and_eos_only(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca(3)])
    (example,), report = load_examples([path], tiny_tokenizer, template="alpaca")
    prompt = ALPACA_PROMPT_NO_INPUT.format(instruction="Write a function that adds 3 to x.")
    prompt_ids = tiny_tokenizer(prompt)["input_ids"]
    response_ids = tiny_tokenizer("def add_3(x):\n    return x + 3\n", add_special_tokens=False)["input_ids"]
    assert example.input_ids == prompt_ids + response_ids + [tiny_tokenizer.eos_token_id]
    assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + response_ids + [tiny_tokenizer.eos_token_id]
    assert tiny_tokenizer.pad_token_id != tiny_tokenizer.eos_token_id
    assert report.loaded == 1


def test_alpaca_input_and_wizardcoder_templates():
    with_input = format_prompt("alpaca", "Sort the list.", "[3, 1, 2]")
    assert "### Input:\n[3, 1, 2]\n\n### Response:" in with_input
    assert with_input.startswith("Below is an instruction that describes a task, paired with an input")
    wizard = format_prompt("wizardcoder", "Sort the list.", "[3, 1, 2]")
    assert wizard.startswith("Below is an instruction that describes a task. Write a response")
    assert "### Instruction:\nSort the list.\n[3, 1, 2]\n\n### Response:" in wizard


def test_chat_records_label_only_assistant_turns(tmp_path, tiny_tokenizer):
    record = {"messages": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Say hi."},
                           {"role": "assistant", "content": "hi"},
                           {"role": "user", "content": "Again."},
                           {"role": "assistant", "content": "hi again"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [record])
    (example,), _ = load_examples([path], tiny_tokenizer)
    learned = tiny_tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])
    assert learned == "hi</s>\nhi again</s>\n"
    full = tiny_tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert tiny_tokenizer.decode(example.input_ids) == full


def test_sharegpt_conversations_are_read_as_chat(tmp_path, tiny_tokenizer):
    record = {"conversations": [{"from": "human", "value": "Add 1 and 2."}, {"from": "gpt", "value": "3"}]}
    (example,), _ = load_examples([write_jsonl(tmp_path / "s.jsonl", [record])], tiny_tokenizer)
    assert tiny_tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX]) == "3</s>\n"


def test_json_array_files_report_the_line_of_a_bad_record(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n')
    with pytest.raises(DataError, match=r"d\.json:3: output: required field is missing"):
        load_examples([path], tiny_tokenizer)


def test_invalid_json_line_names_file_and_line(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(alpaca(1)) + "\n" + '{"instruction": "x", "output": \n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: malformed JSON"):
        load_examples([path], tiny_tokenizer)


def test_wrong_field_type_names_the_field(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca(1), {"instruction": ["not", "text"], "output": "y"}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: instruction: expected a string"):
        load_examples([path], tiny_tokenizer)


def test_empty_outputs_are_skipped_and_reported_with_their_lines(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca(1), alpaca(2, output="  "), alpaca(3)])
    examples, report = load_examples([path], tiny_tokenizer)
    assert len(examples) == 2
    assert report.skipped == {"empty output": 1}
    assert report.where["empty output"] == [f"{path}:2"]
    assert "1 skipped (empty output; first at" in report.summary()


def test_overlong_examples_skip_truncate_or_fail(tmp_path, tiny_tokenizer):
    long = alpaca(9, output="x = 1\n" * 200)
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca(1), long])
    (short,), _ = load_examples([write_jsonl(tmp_path / "s.jsonl", [alpaca(1)])], tiny_tokenizer)
    limit = len(short.input_ids) + 4
    examples, report = load_examples([path], tiny_tokenizer, max_length=limit)
    assert len(examples) == 1 and report.skipped == {f"longer than max_length={limit}": 1}
    examples, report = load_examples([path], tiny_tokenizer, max_length=limit, on_overlong="truncate")
    assert len(examples) == 2 and len(examples[1].input_ids) == limit and report.truncated == 1
    with pytest.raises(DataError, match=rf"d\.jsonl:2: example is \d+ tokens, longer than data.max_length={limit}"):
        load_examples([path], tiny_tokenizer, max_length=limit, on_overlong="error")


def test_missing_file_and_unknown_format(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="data file not found"):
        load_examples([tmp_path / "nope.jsonl"], tiny_tokenizer)
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "?"}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: cannot tell the data format"):
        load_examples([path], tiny_tokenizer)


def test_best_fit_packing_respects_max_length():
    lengths = [5, 9, 3, 7, 2, 8, 1]
    rows = pack_rows(lengths, list(range(len(lengths))), max_length=10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4  # 35 tokens need at least 4 rows of 10


@pytest.mark.parametrize("arch", ["llama", "mistral", "gpt_bigcode"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_give_the_same_per_example_losses_as_unpacked(tmp_path, tiny_tokenizer, tiny_model_dirs,
                                                                   arch, attn):
    records = [alpaca(1), alpaca(22, output="def f(x):\n    return [x] * 22\n"), alpaca(333, output="pass")]
    examples, _ = load_examples([write_jsonl(tmp_path / "d.jsonl", records)], tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[arch], attn_implementation=attn).eval()
    pad = tiny_tokenizer.pad_token_id

    def per_example_losses(rows):
        batch = collate(examples, rows, pad)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], **attention_inputs(batch, attn, torch.float32)).logits
        losses = token_losses(logits, batch["targets"])
        out = []
        for b, row in enumerate(rows):
            for segment, index in enumerate(row):
                out.append((index, losses[b][batch["segment_ids"][b] == segment].sum().item()))
        return dict(out)

    packed = per_example_losses([[0, 1, 2]])
    alone = per_example_losses([[0], [1], [2]])
    assert collate(examples, [[0, 1, 2]], pad)["packed"]
    for index in range(3):
        assert packed[index] == pytest.approx(alone[index], rel=1e-5, abs=1e-5)


def test_targets_never_cross_example_boundaries(tmp_path, tiny_tokenizer):
    examples, _ = load_examples([write_jsonl(tmp_path / "d.jsonl", [alpaca(1), alpaca(2)])], tiny_tokenizer)
    batch = collate(examples, [[0, 1]], tiny_tokenizer.pad_token_id)
    first_len = len(examples[0].input_ids)
    # the last token of example 0 must not be trained to predict example 1's first token
    assert batch["targets"][0, first_len - 1] == IGNORE_INDEX
    assert batch["position_ids"][0, first_len] == 0
    assert batch["num_loss_tokens"] == examples[0].num_loss_tokens + examples[1].num_loss_tokens


def test_step_plan_is_deterministic_and_splits_rows_across_ranks(tmp_path, tiny_tokenizer):
    examples, _ = load_examples([write_jsonl(tmp_path / "d.jsonl", [alpaca(i) for i in range(40)])],
                                tiny_tokenizer)
    plans = [StepPlan(examples, 2, 3, 2, packing=False, max_length=512, seed=7, epochs=2) for _ in range(2)]
    assert plans[0].steps == plans[1].steps
    assert plans[0].total_steps == 2 * (40 // 12) and plans[0].dropped_rows == 2 * (40 % 12)
    step = 1
    rank_rows = [sum(plans[0].for_rank(step, r).micro_batches, []) for r in range(2)]
    all_rows = sorted(map(tuple, rank_rows[0] + rank_rows[1]))
    assert all_rows == sorted(map(tuple, plans[0].steps[step]))
    total = sum(examples[i].num_loss_tokens for row in plans[0].steps[step] for i in row)
    assert plans[0].for_rank(step, 0).step_loss_tokens == plans[0].for_rank(step, 1).step_loss_tokens == total
    other_seed = StepPlan(examples, 2, 3, 2, packing=False, max_length=512, seed=8, epochs=2)
    assert other_seed.steps != plans[0].steps


def test_evol_instruct_output_with_provenance_fields_is_a_training_dataset(tmp_path, tiny_tokenizer):
    record = {"instruction": "Write a function that doubles x.", "input": "", "output": "def f(x):\n    return 2 * x\n",
              "id": "r1-s3", "round": 1, "parent": "s3", "heuristic": "add_constraints",
              "teacher": {"backend": "openai", "model": "tiny"}, "sampling": {"temperature": 0.0}, "seed_value": 0}
    (example,), _ = load_examples([write_jsonl(tmp_path / "merged.jsonl", [record])], tiny_tokenizer,
                                  fmt="evol", template="wizardcoder")
    text = tiny_tokenizer.decode(example.input_ids)
    assert text.startswith("Below is an instruction that describes a task. Write a response")
    assert text.endswith("### Response:def f(x):\n    return 2 * x\n</s>")
