"""The `tuner` command: one subcommand per job, each implemented in its own module.

Subcommand modules are imported only when used, so `tuner evolve --help` does not pay for
DeepSpeed's import.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with `main(argv) -> int`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("tuner.recipes.cli", "fine-tune a model from a YAML recipe (full, lora, qlora, llama_adapter)"),
    "evolve": ("tuner.evol.cli", "evolve code instructions with a teacher model (Evol-Instruct)"),
    "export": ("tuner.export.cli", "write a checkpoint as a folder that transformers loads and vLLM serves"),
    "demo": ("tuner.demo", "the embedded end-to-end job on a tiny model and bundled data"),
    "diagnose": ("tuner.diagnostics.cli", "gradient health, kernel-regime check, adapter placement search"),
}


def _usage() -> str:
    lines = ["usage: tuner <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The deepspeed launcher inserts --local_rank=N before the script's own arguments (unless
    # started with --no_local_rank); the rank is read from the environment instead.
    argv = [a for a in argv if not a.startswith("--local_rank=")]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"tuner: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
