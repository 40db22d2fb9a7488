"""Options shared by the LLaMA-Adapter benchmarks (bench/ is on sys.path when a script runs)."""

from __future__ import annotations

import argparse


def add_adapter_model_args(parser: argparse.ArgumentParser) -> None:
    """The benchmarked Llama's shape and the adapter's K and L (defaults: ~LLaMA-7B's ratios, scaled down)."""
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--intermediate", type=int, default=1408)
    parser.add_argument("--adapter-len", type=int, default=10)
    parser.add_argument("--adapter-layers", type=int, default=7, help="top L of --layers (7 of 8 ~ 30 of 32)")
