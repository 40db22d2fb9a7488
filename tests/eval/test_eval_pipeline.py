"""The command line and the pipeline's robustness: bad input, crashing programs, resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner_eval.evaluate import evaluate
from tuner_eval.generate import RAW_FILE, extract_samples, generate_raw
from tuner.jsonl import InputError
from tuner_eval.sandbox import SandboxConfig
from tuner_eval.tasks import get_task
from tuner.generation import SamplingConfig, make_generator

from eval_helpers import write_samples

REPO = Path(__file__).resolve().parents[2]
# This checkout first, then whatever PYTHONPATH the tests run with.
PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
ADD = "HumanEval/53"  # def add(x: int, y: int)


def tuner_eval(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.run([sys.executable, "-m", "tuner_eval.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_malformed_json_and_unknown_task_ids_are_reported_with_their_line(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": ADD, "completion": "    return x + y\n"}) + "\n"
                       + '{"task_id": "HumanEval/1", "completion": "    return []\n"\n')
    result = tuner_eval("evaluate", "--task", "humaneval", "--samples", str(samples))
    assert result.returncode == 2
    assert f"{samples}:2: malformed JSON" in result.stderr
    samples.write_text(json.dumps({"task_id": ADD, "completion": "x"}) + "\n\n"
                       + json.dumps({"task_id": "HumanEval/999", "completion": "x"}) + "\n")
    result = tuner_eval("evaluate", "--task", "humaneval", "--samples", str(samples))
    assert result.returncode == 2 and f"{samples}:3: unknown task_id 'HumanEval/999'" in result.stderr
    assert not (tmp_path / "samples_results.json").exists()


@pytest.mark.parametrize("line, message", [
    ({"completion": "x"}, "field `task_id` is missing"),
    ({"task_id": ADD}, "field `completion` or `solution` is required"),
    ({"task_id": ADD, "completion": 3}, "field `completion` must be a string"),
    ({"task_id": ADD, "completion": "x", "sample_index": -1}, "field `sample_index` must be a non-negative integer"),
])
def test_bad_sample_fields_name_the_line_and_field(tmp_path, line, message):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": ADD, "completion": "    return x + y\n"}, line])
    with pytest.raises(InputError, match=f"s.jsonl:2: {message}"):
        evaluate("humaneval", samples)


@pytest.mark.slow
def test_crashing_programs_never_stop_the_run_and_evaluation_resumes(tmp_path):
    bad = {
        "segfault": "    import ctypes\n    ctypes.string_at(0)\n",
        "abort": "    import os\n    os.abort()\n",
        "kill self": "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n",
        "recursion": "    def f(n):\n        return f(n + 1)\n    return f(0)\n",
        "memory": "    return len(bytearray(1 << 40))\n",
        "load-time crash": "    return x + y\nimport ctypes\nctypes.string_at(0)\n",
    }
    records = [{"task_id": ADD, "sample_index": i, "completion": body} for i, body in enumerate(bad.values())]
    records += [{"task_id": ADD, "sample_index": 10 + i, "completion": "    return x + y\n"} for i in range(4)]
    samples = write_samples(tmp_path / "samples.jsonl", records)
    out = tmp_path / "results.json"
    results = evaluate("humaneval", samples, out_path=out, ks=[1], sandbox_config=SandboxConfig(workers=2),
                       show_progress=False)
    verdicts = results["per_task"][ADD]["verdicts"]
    assert verdicts == ["error", "error", "error", "fail", "fail", "error", "pass", "pass", "pass", "pass"]
    # Interrupt: keep 4 verdicts and a torn line, then run again: only the rest is executed.
    verdicts_file = tmp_path / "results.verdicts.jsonl"
    lines = verdicts_file.read_text().splitlines(keepends=True)
    verdicts_file.write_text("".join(lines[:4]) + lines[4][:20])
    kept = [json.loads(line) for line in lines[:4]]
    again = evaluate("humaneval", samples, out_path=out, ks=[1], sandbox_config=SandboxConfig(workers=2),
                     show_progress=False)
    assert again["per_task"][ADD]["verdicts"] == verdicts
    final = [json.loads(line) for line in verdicts_file.read_text().splitlines()]
    assert len(final) == len(records) and final[:4] == kept  # finished verdicts were not redone


@pytest.mark.slow
def test_generation_resumes_without_regenerating_and_records_effective_sampling(tiny_llama_dir, tmp_path):
    task = get_task("humaneval")
    dataset = task.load(None)
    ids = list(dataset.problems)[:3]
    generator = make_generator("hf", str(tiny_llama_dir), batch_size=3)
    sampling = SamplingConfig(n=2, temperature=0.8, max_new_tokens=12, seed=1)
    first = generate_raw(task, dataset, generator, sampling, tmp_path, task_ids=ids)
    assert first.requested == 6 and first.generated == 6
    raw = tmp_path / RAW_FILE
    lines = raw.read_text().splitlines(keepends=True)
    raw.write_text("".join(lines[:4]) + lines[4][:10])  # "interrupted" after four samples
    second = generate_raw(task, dataset, generator, sampling, tmp_path, task_ids=ids)
    assert second.requested == 2 and second.generated == 2
    records = [json.loads(line) for line in raw.read_text().splitlines()]
    assert records[:4] == [json.loads(line) for line in lines[:4]]
    assert sorted((r["task_id"], r["sample_index"]) for r in records) == sorted((i, k) for i in ids for k in (0, 1))
    config = json.loads((tmp_path / "generation.json").read_text())
    assert config["sampling_effective"]["top_k"] == 0 and config["sampling_effective"]["temperature"] == 0.8
    assert config["stop"] == task.stops("base") and config["generator"]["backend"] == "hf"
    samples = [json.loads(line) for line in extract_samples(task, dataset, tmp_path).read_text().splitlines()]
    assert len(samples) == 6 and all("completion" in s for s in samples)
    with pytest.raises(InputError, match="different `prompt_style`"):
        generate_raw(task, dataset, generator, sampling, tmp_path, style="instruct", task_ids=ids)


@pytest.mark.slow
def test_tuner_eval_run_end_to_end_with_the_hf_backend(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    result = tuner_eval("run", "--task", "humaneval", "--backend", "hf", "--model", str(tiny_llama_dir),
                        "--limit", "3", "--n", "2", "--temperature", "0.7", "--max-new-tokens", "24",
                        "--prompt-style", "instruct", "--chat", "--k", "1,2,10", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pass@1" in result.stdout and "pass@10" not in result.stdout  # only k <= n is reported
    results = json.loads((out / "results.json").read_text())
    assert set(results["pass@k"]) == {"pass@1", "pass@2"} and len(results["per_task"]) == 3
    assert all(e["n"] == 2 for e in results["per_task"].values())
    assert results["generation"]["sampling_effective"]["temperature"] == 0.7
    assert results["generation"]["prompt_style"] == "instruct" and results["generation"]["chat"] is True
    raw = [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines()]
    assert len(raw) == 6


def test_unreachable_data_gives_a_one_line_error(tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": "11", "solution": "x = 1\n"}])
    env_cache = {"TUNER_EVAL_CACHE": str(tmp_path / "empty-cache"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "tuner_eval.cli", "evaluate", "--task", "mbpp", "--samples", str(samples)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": PYTHONPATH, **env_cache})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tuner-eval: could not download") and "--dataset" in last
    assert "Traceback" not in result.stderr
