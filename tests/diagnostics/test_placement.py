"""Adapter placement search: the search space under a budget, and recovering a planted placement."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tuner.diagnostics.cli import main
from tuner.diagnostics.placement import (Placement, SearchConfig, candidate_placements, planted_placement_task,
                                         plot_search, prompt_layer_cost, successive_halving)
from tuner.tiny import tiny_config


@pytest.fixture(scope="module")
def base_model(tiny_tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", tiny_tokenizer), dtype=torch.float32).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # label-word logits of a useful size (a random head is near zero)
    return model


def test_placements_parse_and_the_budget_decides_the_candidates(base_model):
    assert Placement.parse("p1,2+t3") == Placement((1, 2), (3,)) and Placement((1, 2), (3,)).name == "p1,2+t3"
    with pytest.raises(ValueError, match="expected e.g. p1,2"):
        Placement.parse("x1")
    one_layer = prompt_layer_cost(base_model, 4, "tanh_per_head")
    assert one_layer == 4 * 128 + 2
    singles = candidate_placements(base_model, SearchConfig(budget=one_layer, adapter_len=4))
    assert [p.name for p in singles] == ["p0", "p1", "p2", "p3"]
    roomy = candidate_placements(base_model, SearchConfig(budget=250_000, adapter_len=4, max_candidates=100))
    assert any(p.tuned_layers for p in roomy) and all(len(p.tuned_layers) <= 1 for p in roomy)
    assert not any(p.tuned_layers for p in candidate_placements(
        base_model, SearchConfig(budget=250_000, adapter_len=4, max_candidates=100, search_tuned_layers=False)))
    with pytest.raises(ValueError, match="cheapest needs 514"):
        candidate_placements(base_model, SearchConfig(budget=100, adapter_len=4))


def test_successive_halving_finds_the_layer_whose_prompts_made_the_labels(base_model, tiny_tokenizer, tmp_path,
                                                                          one_thread):
    label_ids = (tiny_tokenizer.convert_tokens_to_ids("Ġno"), tiny_tokenizer.convert_tokens_to_ids("Ġvalue"))
    task = planted_placement_task(base_model, layer=1, label_ids=label_ids, num_examples=320,
                                  bos_id=tiny_tokenizer.bos_token_id)
    train, val = task.subset(list(range(192))), task.subset(list(range(192, 320)))
    config = SearchConfig(budget=prompt_layer_cost(base_model, 4, "tanh_per_head"), adapter_len=4,
                          prompt_init_std=8.0, lr=3e-2, batch_size=32, min_steps=20)
    report = successive_halving(base_model, train, val, config)
    assert report.chosen == "p1" and report.chosen_prompt_layers == [1]
    assert [r["steps"] for r in report.rungs] == [20, 40, 80] and [len(r["candidates"]) for r in report.rungs] == [4, 2, 1]
    assert report.total_training_steps == 4 * 20 + 2 * 20 + 40
    chosen = next(c for c in report.candidates if c.placement == "p1")
    assert [c["steps"] for c in chosen.curve] == [20, 40, 80] and chosen.eliminated_after_steps is None
    assert chosen.curve[-1]["val_loss"] < chosen.curve[0]["val_loss"]
    plot_search(report, tmp_path / "search.png")
    assert (tmp_path / "search.png").stat().st_size > 0
    assert all(p.requires_grad is False or "llama_adapter" not in n for n, p in base_model.named_parameters())


def test_the_cli_searches_files_and_reports_a_bad_record_by_line(sentiment_model_dir, tmp_path, capsys, one_thread):
    from tuner.diagnostics.fewshot import synthetic_sentiment

    rows = synthetic_sentiment(24, seed=1)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows[:16]))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows[16:]))
    out = tmp_path / "out"
    code = main(["placement", "--model", str(sentiment_model_dir), "--train", str(tmp_path / "train.jsonl"),
                 "--val", str(tmp_path / "val.jsonl"), "--budget", "200000", "--adapter-len", "2",
                 "--candidates", "p0", "p1", "p0,1", "p0+t1", "--min-steps", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "placement_search.json").read_text())
    assert report["chosen"] in {"p0", "p1", "p0,1", "p0+t1"} and len(report["candidates"]) == 4
    tuned = next(c for c in report["candidates"] if c["placement"] == "p0+t1")
    assert tuned["tuned_layers"] == [1] and tuned["trainable_params"] > 100_000 and tuned["curve"]
    assert (out / "placement_search.png").stat().st_size > 0
    assert "chosen placement:" in capsys.readouterr().out

    (tmp_path / "val.jsonl").write_text('{"text": "fine", "label": 0}\n{"text": "the end", "label": 7}\n')
    code = main(["placement", "--model", str(sentiment_model_dir), "--train", str(tmp_path / "train.jsonl"),
                 "--val", str(tmp_path / "val.jsonl"), "--budget", "100000", "--out", str(out)])
    assert code == 2 and f"{tmp_path / 'val.jsonl'}:2: label: must be an integer in [0, 2), got 7" in capsys.readouterr().err
