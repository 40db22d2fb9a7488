"""Train a LLaMA-Adapter for a few steps under DeepSpeed ZeRO-3 (one CPU rank) and save it.

Run as a subprocess by test_llama_adapter_deepspeed.py:
    python llama_adapter_zero3_script.py MODEL_DIR CLIP_DIR|none SCIENCEQA_ROOT OUT_DIR
Writes OUT_DIR/result.json (losses, whether weights were partitioned, state-dict size) and the
adapter to OUT_DIR/adapter. Every parameter is partitioned (persistence threshold 0), so the
adapter's hooks only work if they reach frozen weights through module calls.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import torch

from llama_adapter_helpers import ZERO3_CONFIG, scienceqa_batch, train_steps, v2_multimodal_config


def main(model_dir: str, clip_dir: str, scienceqa_root: str, out_dir: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import deepspeed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuner.adapters.llama_adapter import (
        add_llama_adapter,
        count_trainable_parameters,
        llama_adapter_state_dict,
        save_llama_adapter,
    )

    deepspeed.init_distributed(dist_backend="gloo")
    clip = None if clip_dir == "none" else clip_dir
    image_size = 32 if clip else None
    batch = scienceqa_batch(Path(scienceqa_root), AutoTokenizer.from_pretrained(model_dir), image_size)
    torch.manual_seed(0)
    model = add_llama_adapter(AutoModelForCausalLM.from_pretrained(model_dir), v2_multimodal_config(clip))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ZERO3_CONFIG)
    frozen = [p for p in engine.module.parameters() if not p.requires_grad]
    partitioned = all(p.data.numel() == 0 for p in frozen)
    losses = train_steps(engine, batch, optimizer=None)
    state = llama_adapter_state_dict(engine)
    save_llama_adapter(engine, Path(out_dir) / "adapter")
    result = {
        "losses": losses,
        "frozen_weights_partitioned": partitioned,
        "state_dict_numel": sum(t.numel() for t in state.values()),
        "trainable": count_trainable_parameters(engine),
    }
    (Path(out_dir) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:5])
