"""LLaMA-Adapter under DeepSpeed ZeRO-3 with every weight partitioned: same losses as plain PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llama_adapter_helpers import build_tiny_clip, load_base, scienceqa_batch, train_steps, v2_multimodal_config
from tuner.adapters.llama_adapter import add_llama_adapter, count_trainable_parameters, load_llama_adapter

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode"])
def test_zero3_training_matches_plain_pytorch_and_saves_a_loadable_adapter(tiny_model_dirs, tiny_tokenizer, tmp_path, arch):
    model_dir = tiny_model_dirs[arch]
    clip_dir = str(build_tiny_clip(tmp_path / "clip")) if arch == "llama" else None  # multimodal on one family
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]))
    completed = subprocess.run(
        [sys.executable, str(HERE / "llama_adapter_zero3_script.py"), str(model_dir), clip_dir or "none",
         str(tmp_path / "scienceqa"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["frozen_weights_partitioned"]

    batch = scienceqa_batch(tmp_path / "scienceqa", tiny_tokenizer, 32 if clip_dir else None)
    torch.manual_seed(0)
    plain = add_llama_adapter(load_base(model_dir, "sdpa"), v2_multimodal_config(clip_dir))
    optimizer = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=0.05)
    plain_losses = train_steps(plain, batch, optimizer)
    assert plain_losses[-1] < plain_losses[0] - 0.1
    assert result["losses"] == pytest.approx(plain_losses, abs=1e-4)
    assert result["trainable"] == result["state_dict_numel"] == count_trainable_parameters(plain)

    reloaded = load_llama_adapter(load_base(model_dir), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, plain(**batch).logits, atol=1e-4, rtol=1e-4)
