"""Helpers shared by the LLaMA-Adapter tests (tiny real models from the `tiny_model_dirs` fixture)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter, adapter_parameters

ARCHS = ("llama", "mistral", "mistral_head_dim", "gpt_bigcode")


def load_base(folder: Path, attn_implementation: str = "sdpa"):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attn_implementation)


def adapted(folder: Path, config: LlamaAdapterConfig | None = None, seed: int = 0, **kwargs):
    """A tiny model (from its folder) with a LLaMA-Adapter added; gates start at zero."""
    model = load_base(folder, kwargs.pop("attn_implementation", "sdpa"))
    torch.manual_seed(seed)
    add_llama_adapter(model, config or LlamaAdapterConfig(adapter_len=4, adapter_layers=2), **kwargs)
    return model


def open_gates(model, seed: int = 1) -> None:
    """Give every gate a non-zero value so outputs depend on the prompts (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in adapter_parameters(model):
            if name.endswith("llama_adapter.gate"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))


def token_batch(model, batch: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(10, model.config.vocab_size, (batch, length), generator=generator)



def build_tiny_clip(out_dir: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random-initialised CLIPVisionModel saved with save_pretrained (no hub, no torchvision)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=8)
    CLIPVisionModel(config).save_pretrained(out_dir)
    return out_dir


def scienceqa_batch(root: Path, tokenizer, image_size: int | None = 32) -> dict:
    """A collated batch of the sample ScienceQA train split: pid 1 text-only, pid 2 with an image."""
    from tuner.data.scienceqa import ScienceQADataset, collate_scienceqa, load_scienceqa, write_sample_release

    write_sample_release(root)
    images = root / "images" if image_size else None
    problems = load_scienceqa(root / "problems.json", root / "pid_splits.json", "train", image_root=images)
    dataset = ScienceQADataset(problems, tokenizer, max_length=128, image_size=image_size)
    return collate_scienceqa([dataset[0], dataset[1]], pad_token_id=tokenizer.pad_token_id)


def train_steps(model, batch: dict, optimizer=None, steps: int = 5) -> list[float]:
    """Losses of `steps` updates on one batch; without an optimizer `model` is a DeepSpeed engine."""
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        if optimizer is None:
            model.backward(loss)
            model.step()
        else:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# One CPU rank, every parameter partitioned (a persistence threshold of 0 keeps even tiny weights
# sharded), fp32 and no gradient clipping (DeepSpeed 0.19 clips at 1.0 by default) so losses can
# be compared with a plain PyTorch run.
ZERO3_CONFIG = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 1,
    "gradient_clipping": 0.0,
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
}


def v2_multimodal_config(clip_dir: str | None) -> LlamaAdapterConfig:
    """Prompts in the top 2 layers, V2 bias tuning, and CLIP image prompts when `clip_dir` is given."""
    return LlamaAdapterConfig(
        adapter_len=4, adapter_layers=2, bias_tuning=True, multimodal=clip_dir is not None, vision_model=clip_dir
    )
