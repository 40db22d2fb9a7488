"""The embedded end-to-end job (`tuner demo --quick`), run as a user runs it: a subprocess of the CLI.

It trains a tiny model fully, then with LLaMA-Adapter, serves each export with `vllm serve` (CPU
build) and scores held-out problems through the sandboxed harness; pass@1 after full fine-tuning
must reach 0.8 from about 0 before it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuner.demo import PASS_AT_1_GOAL


@pytest.mark.timeout(1800)
def test_demo_quick_trains_serves_and_meets_the_pass_at_1_goal(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail

    scores = json.loads((out / "scores.json").read_text())
    assert list(scores) == ["base", "full fine-tune", "+ LLaMA-Adapter"], scores
    assert scores["base"]["alpaca"] <= 0.1, scores
    assert scores["full fine-tune"]["alpaca"] >= PASS_AT_1_GOAL, scores
    for stage in scores.values():
        assert set(stage) == {"alpaca", "chat"}

    # every stage was scored by the harness from a served model, one verdict per held-out problem
    results = json.loads(next((out / "eval" / "full" / "alpaca").glob("*results.json")).read_text())
    heldout = (out / "data" / "heldout_humaneval.jsonl").read_text().splitlines()
    assert len(results["per_task"]) == len(heldout)
    assert (out / "eval" / "adapter" / "vllm_serve.log").stat().st_size > 0

    # the adapter export is the vLLM plugin's architecture, not a merged plain model
    config = json.loads((out / "export" / "adapter" / "config.json").read_text())
    assert config["architectures"] == ["LlamaAdapterForCausalLM"]

    report = (out / "report.md").read_text()
    assert "full fine-tune" in report and "+ LLaMA-Adapter" in report
    assert (out / "report.png").stat().st_size > 10_000
    assert "pass@1[alpaca]=" in proc.stdout
