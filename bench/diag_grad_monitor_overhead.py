"""Overhead of the gradient-health monitor on DeepSpeed training steps, in this process.

    PYTHONPATH=. python bench/diag_grad_monitor_overhead.py [--stage 0|1|2|3] [--layers 6 --hidden 512]

Times optimizer steps (forward, backward, monitor hooks, engine.step) of one DeepSpeed engine
(a world of one) with the monitor off, on every 10th step and on every step. Each setting runs in
blocks of 10 steps (so every block holds exactly one monitored step at every 10th), the settings
take turns block by block so that load from other processes hits them alike, and the script
prints each setting's median block time per step and its ratio to the unmonitored one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=int, default=0, choices=(0, 1, 2, 3))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="blocks of 10 steps per setting")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from tuner import engine as tuner_engine
    from tuner.diagnostics.config import DiagnosticsArgs
    from tuner.diagnostics.grad_health import GradientHealthMonitor
    from tuner.tiny import tiny_config, train_tokenizer
    from transformers import AutoModelForCausalLM

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(tuner_engine.free_port()))
    tuner_engine.init_distributed()
    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    config = tiny_config("llama", tokenizer, num_hidden_layers=args.layers, hidden_size=args.hidden,
                         intermediate_size=2 * args.hidden, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())
    ds_config = tuner_engine.resolve_deepspeed_config({"zero_optimization": {"stage": args.stage}},
                                              micro_batch_size=args.batch, accumulation=1, world_size=1,
                                              max_grad_norm=1.0, dtype="fp32")
    engine = tuner_engine.build_engine(model, ds_config, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                               lr_lambda=lambda step: 1.0)
    out = Path(tempfile.mkdtemp(prefix="grad_monitor_bench_"))
    monitors = {"off": None}
    for every in (10, 1):
        monitors[f"every {every}"] = GradientHealthMonitor(engine, DiagnosticsArgs(grad_monitor_every_n_steps=every),
                                                           out / str(every))
    ids = torch.randint(10, len(tokenizer), (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    step = 0
    times: dict[str, list[float]] = {name: [] for name in monitors}

    def run(monitor) -> None:
        nonlocal step
        step += 1
        started = time.perf_counter()
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        if monitor is not None:
            monitor.on_gradients(step)
        engine.step()
        if monitor is not None:
            monitor.on_step_end(step)
        return time.perf_counter() - started

    for _ in range(3):
        run(None)  # warm-up
    for _ in range(args.rounds):
        for name, monitor in monitors.items():
            step = (step // 10 + 1) * 10  # a block covers steps 10k+1 .. 10k+10
            times[name].append(sum(run(monitor) for _ in range(10)) / 10)
    base = statistics.median(times["off"])
    print(f"ZeRO stage {args.stage}, {params / 1e6:.1f} M parameters, batch {args.batch}x{args.seq} tokens, "
          f"{args.rounds} blocks of 10 steps per setting, torch threads {torch.get_num_threads()}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  monitor {name:<9} {median * 1000:8.1f} ms per step   ratio to off {median / base:.3f}")


if __name__ == "__main__":
    main()
