"""Where this rank's share of each trainable parameter's gradient and master weight lives.

DeepSpeed keeps the reduced gradient in a different place for each ZeRO stage, and only between
the last `engine.backward()` of an optimizer step and the `engine.step()` that applies it:

- no ZeRO (stage 0): `param.grad`, complete and identical on every rank after the boundary
  all-reduce; with fp32 the parameters are the weights the optimizer updates. With bf16/fp16,
  DeepSpeed's FP16 optimizers keep fp32 master weights beside the `fp16_groups` of parameters,
  per parameter (`fp32_groups`, FP16_UnfusedOptimizer) or as one flat tensor per group
  (`fp32_groups_flat`, FP16_Optimizer); those are read instead, since an update smaller than
  bf16's resolution would vanish from the low-precision copy.
- ZeRO-1/2, and the BF16 optimizer: every rank owns a contiguous fragment of the flat fp32 master
  weights. `param._hp_mapping` (attached by `deepspeed.utils.link_hp_params`) locates this rank's
  fragment of the reduced gradient and of the fp32 weight; `deepspeed.utils.safe_get_full_grad`
  and `safe_get_full_fp32_param` all-reduce those same fragments into full tensors. Here only the
  local fragment is read, and nothing is communicated.
- ZeRO-3: `deepspeed.utils.safe_get_local_grad` and `safe_get_local_fp32_param` return this
  rank's partition.

Squared norms of the fragments summed over ranks are the full squared norms, so one all-reduce of
a short vector per monitored step is all the communication a monitor needs. Replicated state
(stage 0) is counted on rank 0 only, so the same sum holds.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from tuner.engine import local_fp32_partition, local_grad_partition

PLAIN = "plain"
"""A torch module outside DeepSpeed (gradients on `param.grad`)."""
REPLICATED = "replicated"
"""DeepSpeed without partitioned optimizer state (ZeRO stage 0)."""
FRAGMENTS = "fragments"
"""ZeRO-1/2 or DeepSpeed's BF16 optimizer: fp32 master fragments linked through `_hp_mapping`."""
PARTITIONED = "partitioned"
"""ZeRO-3."""


def _is_engine(model: object) -> bool:
    return hasattr(model, "zero_optimization_stage") and isinstance(getattr(model, "module", None), nn.Module)


class FragmentReader:
    """Reads this rank's gradient and weight fragments of every trainable parameter.

    Args:
        model: a DeepSpeed engine or a plain torch module.
        rank: this process's data-parallel rank (replicated state is read on rank 0 only).
    """

    def __init__(self, model: object, rank: int = 0):
        self.engine = model if _is_engine(model) else None
        module = model.module if self.engine is not None else model
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.rank = rank
        if self.engine is None:
            self.layout = PLAIN
        elif self.engine.zero_optimization_partition_weights():
            self.layout = PARTITIONED
        elif any(hasattr(p, "_hp_mapping") for p in self.params):
            self.layout = FRAGMENTS
        else:
            self.layout = REPLICATED
        self._master = self._master_views() if self.layout == REPLICATED else {}

    def _master_views(self) -> dict[int, torch.Tensor]:
        """id(param) -> its fp32 master copy in DeepSpeed's FP16 optimizers (empty for fp32 training)."""
        optimizer = self.engine.optimizer
        groups = getattr(optimizer, "fp16_groups", None)
        if not groups:
            return {}
        views = {}
        if getattr(optimizer, "fp32_groups", None):
            for group, masters in zip(groups, optimizer.fp32_groups):
                views.update((id(p), m.detach()) for p, m in zip(group, masters))
        elif getattr(optimizer, "fp32_groups_flat", None):
            for group, flat in zip(groups, optimizer.fp32_groups_flat):
                offset = 0
                for param in group:
                    views[id(param)] = flat.detach().narrow(0, offset, param.numel())
                    offset += param.numel()
        return views

    @property
    def owns_replicated(self) -> bool:
        return self.rank == 0

    def gradient_scale(self) -> float:
        """The factor the stored gradients carry (fp16 loss scaling), to divide out."""
        if self.engine is None or not self.engine.fp16_enabled():
            return 1.0
        optimizer = self.engine.optimizer
        config = getattr(optimizer, "loss_scale_config", None)
        scale = config.cur_scale if config is not None else getattr(optimizer, "cur_scale", None)
        return float(scale) if scale else 1.0

    def gradients(self) -> Iterator[torch.Tensor | None]:
        """This rank's fragment of each parameter's gradient (None: nothing held here)."""
        for param in self.params:
            yield self._gradient(param)

    def weights(self) -> Iterator[torch.Tensor | None]:
        """This rank's fragment of each parameter's (master) weight (None: nothing held here)."""
        for param in self.params:
            yield self._weight(param)

    def _gradient(self, param: nn.Parameter) -> torch.Tensor | None:
        if self.layout == PARTITIONED:
            return local_grad_partition(param)
        if self.layout == FRAGMENTS:
            mapping = getattr(param, "_hp_mapping", None)
            if mapping is None:
                return None
            grad = mapping.get_lp_grad_fragment(param._index_in_param_group).reshape(-1)
            address = mapping.lp_fragment_address
            if grad.numel() == param.numel() and address.numel != param.numel():
                # The BF16 optimizer keeps a full-size accumulation buffer on every rank; only the
                # owned fragment counts (as in deepspeed.utils.tensor_fragment.get_full_hp_grad).
                grad = grad.narrow(0, address.start, address.numel)
            return grad
        if self.layout == REPLICATED and not self.owns_replicated:
            return None
        return param.grad

    def _weight(self, param: nn.Parameter) -> torch.Tensor | None:
        if self.layout == PARTITIONED:
            return local_fp32_partition(param)
        if self.layout == FRAGMENTS:
            mapping = getattr(param, "_hp_mapping", None)
            return None if mapping is None else mapping.get_hp_fragment()
        if self.layout == REPLICATED and not self.owns_replicated:
            return None
        return self._master.get(id(param), param.detach())
