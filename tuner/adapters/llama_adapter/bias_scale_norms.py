"""LLaMA-Adapter V2 options (arXiv 2304.15010, §3.2): bias/scale tuning and unfrozen norms.

Bias tuning turns every linear layer y = W x (+ b0) of the decoder into y = s * (W x + b0 + b),
with a trainable bias b initialised to zero and a trainable scale s initialised to one, so the
model is unchanged at initialisation. The base layer is untouched: a forward hook calls a small
`LinearBiasScale` module on its output (a module call, so DeepSpeed ZeRO-3 gathers b and s).
"""

from __future__ import annotations

import torch
from torch import nn

BIAS_SCALE_NAME = "llama_adapter_bias_scale"


class LinearBiasScale(nn.Module):
    """Trainable bias (zeros) and scale (ones) applied to one linear layer's output."""

    def __init__(self, out_features: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))
        self.scale = nn.Parameter(torch.ones(out_features, dtype=dtype, device=device))

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return (output + self.bias) * self.scale


def _apply_bias_scale(linear: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return getattr(linear, BIAS_SCALE_NAME)(output)


def add_bias_scale(layers: nn.ModuleList) -> None:
    """Attach bias/scale tuning to every nn.Linear inside the decoder layers.

    Must run before other forward hooks are added to these linears, so that hooks reading a
    projection's output (the adapter's query capture) see the tuned output.
    """
    for layer in layers:
        for linear in [m for m in layer.modules() if isinstance(m, nn.Linear)]:
            weight = linear.weight
            linear.add_module(BIAS_SCALE_NAME, LinearBiasScale(linear.out_features, weight.dtype, weight.device))
            linear.register_forward_hook(_apply_bias_scale)


def is_norm_layer(module: nn.Module) -> bool:
    """LayerNorm or an RMSNorm-style module (transformers names them *RMSNorm / *LayerNorm)."""
    name = type(module).__name__
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or name.endswith("RMSNorm") or name.endswith("LayerNorm")


def unfreeze_norms(model: nn.Module, skip: nn.Module | None = None) -> None:
    """Make every norm layer's parameters trainable (except those under `skip`)."""
    skipped = set(skip.modules()) if skip is not None else set()
    for module in model.modules():
        if module in skipped or not is_norm_layer(module):
            continue
        for param in module.parameters(recurse=False):
            param.requires_grad_(True)
