"""Everything DeepSpeed, in one module: process group start-up, JIT op builds, the config, the
engine, its checkpoints, and gathering or locating partitioned weights.

The rest of tuner sees a model and an optimizer step (forward, backward, step) and the plain
helpers here; no other module imports deepspeed.
One process without a launcher is a world of size one; under the `deepspeed` launcher (one node or
many, through a hostfile) or torchrun, the environment tells the rank and world size.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from tuner.config import ConfigError
from tuner.generation.server import free_port  # noqa: F401  (also used by launch helpers and tests)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _extensions_dir() -> Path:
    default = Path.home() / ".cache" / "torch_extensions"
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR", default))


@contextlib.contextmanager
def _jit_build_guard() -> Iterator[None]:
    """Hold an exclusive flock while DeepSpeed's JIT ops build or load.

    torch's extension builder marks a build in progress with a `lock` file that a killed build
    leaves behind, after which every later run waits on it forever. The flock is released by the
    kernel when its holder dies, so whoever holds it knows no other tuner process is building:
    any `lock` file it finds is stale and is removed.
    """
    root = _extensions_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".tuner-build.flock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for stale in root.glob("*/lock"):
                logger.warning("removing stale JIT build lock %s", stale)
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prebuild_ops() -> None:
    """Build (or load from the cache) the ops DeepSpeed needs at start-up, under the build guard.

    On the CPU accelerator that is the shared-memory communication op used for all-reduce.
    """
    from deepspeed.accelerator import get_accelerator

    import deepspeed.ops

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return
    with _jit_build_guard():
        builder.load(verbose=False)


def init_distributed() -> DistInfo:
    """Start the process group (gloo on CPU, nccl on CUDA), alone or under a launcher."""
    import deepspeed

    if "RANK" not in os.environ:  # a plain `tuner train`: a world of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", str(free_port())))
    prebuild_ops()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device())
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
    return tensor.tolist()


# --- the DeepSpeed config ---------------------------------------------------------------------

_FILLED_BY_RECIPE = {
    "train_micro_batch_size_per_gpu": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "train_batch_size": "train.micro_batch_size x train.gradient_accumulation_steps x world size",
    "gradient_clipping": "train.max_grad_norm",
}


def load_deepspeed_config(path: str | Path | None) -> dict:
    """The JSON config at `path` (relative: from the working directory, else from the tuner
    checkout that holds launch/), or ZeRO stage 0 when `path` is None."""
    if path is None:
        return {"zero_optimization": {"stage": 0}}
    path = Path(path)
    checkout = Path(__file__).resolve().parent.parent / path
    if not path.exists() and not path.is_absolute() and checkout.exists():
        path = checkout
    if not path.exists():
        raise ConfigError(f"deepspeed.config: file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def resolve_deepspeed_config(raw: dict, *, micro_batch_size: int, accumulation: int, world_size: int,
                             max_grad_norm: float | None, dtype: str, source: str = "deepspeed.config") -> dict:
    """Fill in batch geometry, clipping and precision from the recipe.

    A value the recipe decides may be absent or "auto" in the JSON; a different explicit value is
    an error, since two sources of truth for the batch size would silently disagree.
    """
    config = copy.deepcopy(raw)
    wanted = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": micro_batch_size * accumulation * world_size,
        "gradient_clipping": max_grad_norm if max_grad_norm is not None else 0.0,
    }
    for key, value in wanted.items():
        given = config.get(key, "auto")
        if given != "auto" and given != value:
            raise ConfigError(f"{source}: {key}={given!r} conflicts with the recipe ({_FILLED_BY_RECIPE[key]} "
                              f"gives {value!r}); remove it or set it to \"auto\"")
        config[key] = value
    for precision in ("bf16", "fp16"):
        section = config.setdefault(precision, {})
        if section.get("enabled", "auto") not in ("auto", dtype == precision):
            raise ConfigError(f"{source}: {precision}.enabled={section['enabled']!r} conflicts with model.dtype={dtype!r}")
        section["enabled"] = dtype == precision
    config.setdefault("steps_per_print", 10**9)
    config.setdefault("wall_clock_breakdown", False)
    zero = config.setdefault("zero_optimization", {})
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"{source}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if stage == 3:
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    offload = zero.get("offload_optimizer", {}).get("device", "none") != "none"
    if offload and "optimizer" not in config:
        # tuner passes its own torch AdamW; with offload DeepSpeed would insist on its CPU Adam op.
        config.setdefault("zero_force_ds_cpu_optimizer", False)
    return config


def zero_stage(config: dict) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


# --- engine ---------------------------------------------------------------------------------------


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1 over `warmup_steps`, then cosine decay to `min_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        decay_steps = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices (weights, LoRA factors, adaption prompts); none on biases,
    norms and gates."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and weight_decay > 0 else no_decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.insert(0, {"params": decay, "weight_decay": weight_decay})
    return [g for g in groups if g["params"]]


def build_engine(model: torch.nn.Module, ds_config: dict, *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, lr_lambda: Callable[[int], float]):
    """Wrap `model` in a DeepSpeed engine with a torch AdamW and a LambdaLR schedule."""
    import deepspeed

    groups = parameter_groups(model, weight_decay)
    if not groups:
        raise ConfigError("train.method: no trainable parameters in the model")
    optimizer = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)

    def scheduler(opt):
        for group in opt.param_groups:
            group.setdefault("initial_lr", lr)
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)

    kept = _computed_fp32_buffers(model)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, model_parameters=groups if optimizer is None else None,
        lr_scheduler=scheduler, config=ds_config,
    )
    for module, name, buffer in kept:
        module._buffers[name] = buffer.to(device())
    return engine


def _computed_fp32_buffers(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.Tensor]]:
    """fp32 buffers that are computed at construction rather than saved (rotary `inv_freq`).

    DeepSpeed casts the whole module, buffers included, to bf16/fp16; rounding RoPE frequencies
    would make the trained model compute differently from the same weights loaded for inference
    (where from_pretrained recomputes them in fp32), so they are restored after initialisation.
    """
    kept = []
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.dtype == torch.float32 and name in module._non_persistent_buffers_set:
                kept.append((module, name, buffer.detach().clone()))
    return kept


def full_state_dict(engine) -> dict | None:
    """The full, unpartitioned model state dict on rank 0 (None elsewhere); all ranks must call it.

    Under ZeRO-3 the shards are gathered layer by layer; otherwise every rank already holds the
    whole model.
    """
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    if torch.distributed.get_rank() != 0:
        return None
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}


# --- partitioned parameters -----------------------------------------------------------------------


def is_partitioned(param: torch.Tensor) -> bool:
    """True for a parameter that DeepSpeed ZeRO-3 has partitioned across ranks."""
    return hasattr(param, "ds_id")


def gathered(params: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
    """A context in which ZeRO-3 partitioned `params` hold their full values (a collective: every
    rank must enter it); nothing to do when none is partitioned."""
    partitioned = [p for p in params if is_partitioned(p)]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)


def local_grad_partition(param: torch.nn.Parameter) -> torch.Tensor | None:
    """This rank's partition of a ZeRO-3 parameter's reduced gradient."""
    from deepspeed.utils import safe_get_local_grad

    return safe_get_local_grad(param)


def local_fp32_partition(param: torch.nn.Parameter) -> torch.Tensor | None:
    """This rank's partition of a ZeRO-3 parameter's fp32 master weight."""
    from deepspeed.utils import safe_get_local_fp32_param

    return safe_get_local_fp32_param(param)


# --- checkpoints ----------------------------------------------------------------------------------


def save_engine_state(engine, root: Path, tag: str, client_state: dict, exclude_frozen: bool) -> None:
    """DeepSpeed's own checkpoint (model, optimizer and scheduler, sharded per rank) in root/tag."""
    engine.save_checkpoint(str(root), tag=tag, client_state=client_state, exclude_frozen_parameters=exclude_frozen)


def load_engine_state(engine, folder: Path, exclude_frozen: bool) -> dict:
    """Restore model, optimizer and scheduler from a `save_engine_state` folder; returns its client state."""
    load_path, client_state = engine.load_checkpoint(
        str(folder.parent), tag=folder.name, load_module_strict=not exclude_frozen,
        load_optimizer_states=True, load_lr_scheduler_states=True,
    )
    if load_path is None:
        raise RuntimeError(f"{folder}: DeepSpeed could not load this checkpoint")
    return client_state


def consolidated_state_dict(checkpoint: Path) -> dict[str, torch.Tensor] | None:
    """The weights of a `save_engine_state` folder: the fp32 master weights under ZeRO-1/2/3, the
    module weights under ZeRO-0 (None if the folder holds no DeepSpeed model states). Parameters
    excluded from the checkpoint (frozen ones) are absent."""
    if list(checkpoint.glob("*optim_states.pt")) and list(checkpoint.glob("zero_pp_rank_*")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)
    states = sorted(checkpoint.glob("mp_rank_*_model_states.pt"))
    if not states:
        return None
    return {k: v.float() for k, v in torch.load(states[0], map_location="cpu", weights_only=False)["module"].items()}
