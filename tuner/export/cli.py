"""`tuner export CKPT --out DIR` (see tuner.export)."""

from __future__ import annotations

import argparse
import logging
import sys

import tuner.export
from tuner.config import ConfigError
from tuner.export.errors import ExportError
from tuner.export.sources import export
from tuner.models import TORCH_DTYPES


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tuner export", description=tuner.export.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt", help="a run folder, its final/ folder, or a checkpoints/step_N folder")
    parser.add_argument("--out", required=True, help="folder to write (must be empty or absent)")
    parser.add_argument("--dtype", choices=sorted(TORCH_DTYPES), default="bf16", help="weight dtype (default bf16)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--base", help="base model folder of a LLaMA-Adapter folder (default: the one recorded "
                        "in its adapter_config.json or training_config.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = export(args.ckpt, args.out, args.dtype, args.overwrite, args.base)
    except (ExportError, ConfigError) as exc:
        print(f"tuner export: error: {exc}", file=sys.stderr)
        return 2
    print(f"exported: {path}")
    return 0
