"""`tuner train RECIPE.yaml [section.key=value ...]`

Runs in this process (a world of one) or, started by the `deepspeed` launcher (see
launch/train.sh and launch/train_multinode.sh), as one rank of many.
"""

from __future__ import annotations

import argparse
import sys

from tuner.config import ConfigError, load_recipe
from tuner.data.records import DataError
from tuner.diagnostics.grad_alarms import GradientHealthError
from tuner.recipes.args import RecipeConfig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tuner train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="YAML recipe (see launch/recipes/)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=1e-4 data.packing=true")
    args = parser.parse_args(argv)
    try:
        config = load_recipe(RecipeConfig, args.recipe, args.overrides)
        from tuner.recipes.finetune import main as run

        run(config)
    except (ConfigError, DataError) as exc:
        print(f"tuner train: error: {exc}", file=sys.stderr)
        return 2
    except GradientHealthError as exc:
        print(f"tuner train: stopped: {exc}", file=sys.stderr)
        return 3
    return 0
