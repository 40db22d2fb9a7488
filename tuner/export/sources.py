"""Where a checkpoint comes from (run folder, final folder, DeepSpeed checkpoint) and how each
kind becomes a folder that transformers loads and vLLM serves (see tuner.export)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from tuner.checkpoint import COMPLETE_MARKER, complete_checkpoints
from tuner.config import ConfigError, from_dict, load_yaml
from tuner.export.errors import ExportError
from tuner.export.llama_adapter import export_adapted_model, export_adapter_folder
from tuner.models import TORCH_DTYPES
from tuner.recipes.args import RecipeConfig


@dataclass
class Source:
    """What a CKPT argument resolved to."""

    kind: str  # "hf" | "peft" | "llama_adapter" | "deepspeed"
    path: Path
    recipe: RecipeConfig | None


def _recipe_near(path: Path) -> RecipeConfig | None:
    """The resolved recipe saved by `tuner train` beside a final folder or a run."""
    for candidate in (path / "training_config.yaml", path / "config.yaml", path.parent / "config.yaml",
                      path.parent.parent / "config.yaml"):
        if candidate.exists():
            try:
                return from_dict(RecipeConfig, load_yaml(candidate))
            except ConfigError as exc:
                message = str(exc)
                raise ExportError(message if message.startswith(str(candidate)) else f"{candidate}: {message}") from None
    return None


def resolve_source(ckpt: str | Path) -> Source:
    path = Path(ckpt)
    if not path.exists():
        raise ExportError(f"{path}: no such checkpoint or run folder")
    if (path / "final").is_dir():
        return resolve_source(path / "final")
    if (path / "adapter_config.json").exists():
        method = json.loads((path / "adapter_config.json").read_text()).get("method")
        return Source("llama_adapter" if method == "llama_adapter" else "peft", path, _recipe_near(path))
    if (path / "config.json").exists():
        return Source("hf", path, _recipe_near(path))
    if (path / COMPLETE_MARKER).exists():
        return Source("deepspeed", path, _recipe_near(path))
    complete = complete_checkpoints(path)
    if complete:
        return Source("deepspeed", complete[-1], _recipe_near(complete[-1]))
    raise ExportError(f"{path}: not a tuner run, final folder, HF folder or complete checkpoint")


def consolidated_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The weights of a resumable checkpoint: fp32 master weights under ZeRO-1/2/3, the module
    weights under ZeRO-0. Parameters excluded from the checkpoint (frozen ones) are absent."""
    from tuner.engine import consolidated_state_dict as engine_weights

    state = engine_weights(checkpoint)
    if state is None:
        raise ExportError(f"{checkpoint}: no DeepSpeed model states found")
    return state


def _save_plain(model, tokenizer, out: Path, dtype: torch.dtype) -> Path:
    model = model.to(dtype)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _base_tokenizer(source: Source):
    from transformers import AutoTokenizer

    for candidate in (source.path, source.path.parent.parent / "tokenizer"):
        if (candidate / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(candidate)
    return AutoTokenizer.from_pretrained(source.recipe.model.tokenizer_path or source.recipe.model.path)


def export_hf(source: Source, out: Path, dtype: torch.dtype) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    return _save_plain(model, AutoTokenizer.from_pretrained(source.path), out, dtype)


def export_peft(source: Source, out: Path, dtype: torch.dtype) -> Path:
    """Merge a LoRA adapter into an unquantised copy of its base model."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = PeftConfig.from_pretrained(source.path).base_model_name_or_path
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, source.path).merge_and_unload()
    return _save_plain(merged, AutoTokenizer.from_pretrained(source.path), out, dtype)


def export_deepspeed(source: Source, out: Path, dtype: torch.dtype) -> Path:
    """Rebuild the trained model from a resumable checkpoint, then export it by method."""
    if source.recipe is None:
        raise ExportError(f"{source.path}: no config.yaml of the run found beside the checkpoint")
    from tuner.adapters import adapter_method
    from tuner.models import load_model

    recipe = source.recipe
    method = recipe.train.method
    state = consolidated_state_dict(source.path)
    tokenizer = _base_tokenizer(source)
    model = load_model(recipe.model.path, dtype="fp32", attn_implementation="sdpa")  # never quantised here
    if method == "full":
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        _load_exactly(model, state, source.path)
        return _save_plain(model, tokenizer, out, dtype)
    model = adapter_method(method).add(model, recipe.method_options(), False)
    _load_trainable(model, state, source.path)
    if method == "llama_adapter":  # a new term in attention, not a weight change: served by tuner's classes
        return export_adapted_model(model, tokenizer, out, dtype)
    return _save_plain(model.merge_and_unload(), tokenizer, out, dtype)  # LoRA / QLoRA: merged


def _load_exactly(model, state: dict, where: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k and getattr(model.config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise ExportError(f"{where}: checkpoint does not match the model of its recipe "
                          f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")


def _load_trainable(model, state: dict, where: Path) -> None:
    """Load the trained parameters (the checkpoint excludes frozen ones) and check all are there."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = trainable - set(state)
    unexpected = set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ExportError(f"{where}: checkpoint does not match the recipe's {sorted(trainable)[:1]}... "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.load_state_dict(state, strict=False)


def export(ckpt: str | Path, out: str | Path, dtype: str = "bf16", overwrite: bool = False,
           base: str | Path | None = None) -> Path:
    """Export `ckpt` to `out`; returns `out`. `base` overrides the base model of a LLaMA-Adapter
    folder (default: the one recorded in its adapter_config.json or training_config.yaml)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out}: folder exists and is not empty (use --overwrite)")
        shutil.rmtree(out)
    source = resolve_source(ckpt)
    torch_dtype = TORCH_DTYPES[dtype]
    exporters = {"hf": export_hf, "peft": export_peft, "deepspeed": export_deepspeed}
    if source.kind == "llama_adapter":
        return export_adapter_folder(source.path, out, torch_dtype, base=base)
    return exporters[source.kind](source, out, torch_dtype)
