"""Run a recipe through tuner's own setup/fit/save_final, then record the in-memory model's logits.

Started by tests/test_deepspeed.py under the deepspeed launcher; every rank runs it (ZeRO-3's
forward gathers parameters collectively). Rank 0 writes <output_dir>/probe_logits.pt.
"""

import sys

import torch

from tuner.config import load_recipe
from tuner.recipes.args import RecipeConfig
from tuner.recipes.finetune import fit, save_final, setup

if __name__ == "__main__":
    config = load_recipe(RecipeConfig, sys.argv[1], sys.argv[2:])
    rt = setup(config)
    fit(rt)
    save_final(rt)
    probe = torch.tensor([rt.examples[0].input_ids])
    rt.engine.eval()
    with torch.no_grad():
        logits = rt.engine(input_ids=probe).logits.float()
    # The weights the engine holds right now, gathered independently of tuner's own export path.
    import deepspeed

    params = list(rt.engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, enabled=rt.engine.zero_optimization_partition_weights()):
        weights = {n: p.detach().clone().cpu() for n, p in rt.engine.module.named_parameters()} if rt.dist.is_main else None
    if rt.dist.is_main:
        torch.save({"input_ids": probe, "logits": logits, "weights": weights}, rt.output_dir / "probe_logits.pt")
