"""Export a LLaMA-Adapter model as one folder that transformers loads and vLLM serves.

A LLaMA-Adapter cannot be merged into the base weights (its gated prompt attention is a new term,
not a weight change), so the folder holds the base weights and the adapter's prompts and gates
under the model type and architecture of tuner's own classes (hf_model.py for transformers,
vllm_plugin/ for vLLM). config.json keeps every field of the base config and adds a
`llama_adapter` section: the adapter config, the trained config, and the computation in words.

What is changed on the way, and why:
- V2 bias/scale tuning, y = s * (W x + b0 + b), is folded into the linear layers as
  W' = s * W, b' = s * (b0 + b): the same function (up to float rounding) with plain weights,
  so no runtime needs the extra op. Llama gets `attention_bias` and `mlp_bias` set to hold b'.
- V2 unfrozen norms need nothing: their trained weights are the model's norm weights.

Refused, with the reason: multimodal adapters (image prompts cannot be served), Mistral with a
sliding window or with V2 bias tuning (its attention has no bias option), multi-head GPTBigCode.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
import yaml

from tuner.adapters.llama_adapter.checkpoint import CONFIG_NAME, METHOD, describe_adapter, load_llama_adapter
from tuner.adapters.llama_adapter.config import LlamaAdapterConfig
from tuner.adapters.llama_adapter.model import CONFIG_ATTRIBUTE, unwrap_adapted
from tuner.adapters.llama_adapter.bias_scale_norms import BIAS_SCALE_NAME
from tuner.export.errors import ExportError
from tuner.export.hf_model import EXPORT_CLASSES, EXPORT_SECTION

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
TRAINING_CONFIG_NAME = "training_config.yaml"

_BIAS_SUFFIX = f".{BIAS_SCALE_NAME}.bias"
_SCALE_SUFFIX = f".{BIAS_SCALE_NAME}.scale"


def check_servable(config, adapter: LlamaAdapterConfig, where: str) -> None:
    """Raise ExportError if this base model + adapter cannot be exported as a served model.

    `where` names the model or folder in the message.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in EXPORT_CLASSES:
        raise ExportError(f"{where}: LLaMA-Adapter export supports model types {', '.join(sorted(EXPORT_CLASSES))}, "
                          f"not {model_type!r}")
    if adapter.multimodal:
        raise ExportError(f"{where}: a multimodal LLaMA-Adapter (llama_adapter.multimodal: true) cannot be exported: "
                          "vLLM serving of image prompts is not supported; train a text-only adapter to serve it")
    if model_type == "mistral":
        if getattr(config, "sliding_window", None) is not None:
            raise ExportError(f"{where}: Mistral with sliding_window {config.sliding_window} cannot be exported: the "
                              "vLLM adapter model has no sliding-window attention (set sliding_window null in the "
                              "base config.json if your contexts never exceed it)")
        if adapter.bias_tuning:
            raise ExportError(f"{where}: V2 bias tuning (llama_adapter.bias_tuning) cannot be exported for Mistral, "
                              "whose attention has no bias option to hold the folded biases")
    if model_type == "gpt_bigcode" and not config.multi_query:
        raise ExportError(f"{where}: multi-head GPTBigCode (multi_query: false) cannot be exported; only multi-query "
                          "(StarCoder-style) models are served")


def fold_bias_scale(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold V2 bias/scale tuning into the linear weights; returns (new state, folded linear names).

    For y = s * (W x + b0 + b): W' = s[:, None] * W and b' = s * (b0 + b), computed in float32.
    """
    folded = dict(state)
    linears = sorted(key[: -len(_BIAS_SUFFIX)] for key in state if key.endswith(_BIAS_SUFFIX))
    for linear in linears:
        added_bias = folded.pop(linear + _BIAS_SUFFIX).float()
        scale = folded.pop(linear + _SCALE_SUFFIX).float()
        weight = folded[f"{linear}.weight"]
        base_bias = folded.get(f"{linear}.bias")
        base_bias = torch.zeros_like(added_bias) if base_bias is None else base_bias.float()
        folded[f"{linear}.weight"] = (weight.float() * scale[:, None]).to(weight.dtype)
        folded[f"{linear}.bias"] = ((base_bias + added_bias) * scale).to(weight.dtype)
    return folded, linears


def _export_section(model, adapter: LlamaAdapterConfig, folded: list[str]) -> dict:
    described = describe_adapter(model)
    computation = dict(described["computation"])
    computation["v2_bias_tuning"] = None
    servable = LlamaAdapterConfig.from_dict({**adapter.to_dict(), "bias_tuning": False, "unfreeze_norms": False})
    return {
        "method": METHOD,
        "format_version": EXPORT_FORMAT_VERSION,
        "config": servable.to_dict(),
        "trained_config": adapter.to_dict(),
        "folded_into_weights": (
            [f"V2 bias/scale tuning of {len(folded)} linear layers: weight' = scale * weight, "
             "bias' = scale * (bias + tuned bias)"] if folded else []
        ),
        "base_model": described["base_model"],
        "computation": computation,
    }


def export_adapted_model(model, tokenizer, out: Path, dtype: torch.dtype) -> Path:
    """Write a transformers model with LLaMA-Adapter added (and loaded) as a servable folder.

    Args:
        model: a Llama, Mistral or GPTBigCode *ForCausalLM after `add_llama_adapter` /
            `load_llama_adapter`, or a DDP / DeepSpeed ZeRO-0-2 wrapper of one (ZeRO-3 shards
            must be consolidated first, as `tuner export` does); it is not changed.
        tokenizer: saved beside the weights.
        out: the folder to write (created if needed).
        dtype: dtype of the saved floating-point weights.

    Returns:
        `out`, loadable with `AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)` and
        servable with `vllm serve out` once tuner is installed.

    Raises:
        ExportError: the model or adapter cannot be served (see `check_servable`).
    """
    from accelerate import init_empty_weights

    inner = unwrap_adapted(model)
    adapter: LlamaAdapterConfig = getattr(inner, CONFIG_ATTRIBUTE)
    where = getattr(inner.config, "_name_or_path", "") or type(inner).__name__
    check_servable(inner.config, adapter, where)
    config_class, model_class = EXPORT_CLASSES[inner.config.model_type]

    state, folded = fold_bias_scale({name: tensor.detach().cpu() for name, tensor in inner.state_dict().items()})
    state = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    dropped = ("model_type", "auto_map", "transformers_version")
    fields = {k: v for k, v in inner.config.to_dict().items() if k not in dropped}
    fields.update(architectures=[model_class.__name__], dtype=dtype, use_cache=True,  # training may turn it off
                  **{EXPORT_SECTION: _export_section(inner, adapter, folded)})
    if folded and inner.config.model_type == "llama":
        fields.update(attention_bias=True, mlp_bias=True)
    exported_config = config_class(**fields)

    with init_empty_weights():
        exported = model_class(exported_config)
    missing, unexpected = exported.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:  # a bug, not bad input: the classes mirror the trained model's modules
        raise RuntimeError(f"exported model does not match the adapted model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    exported.tie_weights()
    exported.generation_config = copy.deepcopy(inner.generation_config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exported.save_pretrained(out)
    tokenizer.save_pretrained(out)
    logger.info("exported %s with LLaMA-Adapter (%s) to %s", inner.config.model_type, model_class.__name__, out)
    return out


def _read_adapter_config(adapter_dir: Path) -> dict:
    path = adapter_dir / CONFIG_NAME
    if not path.is_file():
        raise ExportError(f"{path} not found: not a LLaMA-Adapter folder")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if saved.get("method") != METHOD:
        raise ExportError(f"{path}: method is {saved.get('method')!r}, not {METHOD!r}")
    for field in ("config", "base_model"):
        if not isinstance(saved.get(field), dict):
            raise ExportError(f"{path}: field `{field}` is missing or not an object")
    return saved


def base_model_candidates(adapter_dir: Path, saved: dict) -> list[tuple[str, str]]:
    """(where it came from, path) of the recorded base model locations, in the order tried."""
    candidates = []
    recorded = saved["base_model"].get("name_or_path")
    if recorded:
        candidates.append((f"{adapter_dir / CONFIG_NAME} base_model.name_or_path", str(recorded)))
    training_config = adapter_dir / TRAINING_CONFIG_NAME
    if training_config.is_file():
        try:
            recipe = yaml.safe_load(training_config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ExportError(f"{training_config}: not valid YAML ({exc})") from None
        path = (recipe.get("model") or {}).get("path") if isinstance(recipe, dict) else None
        if path:
            candidates.append((f"{training_config} model.path", str(path)))
    return candidates


def resolve_base_model(adapter_dir: Path, saved: dict, base: str | Path | None) -> str:
    """The base model to load: `base` if given, else the first recorded location that is a folder.

    Raises:
        ExportError: nothing was given and no recorded location is an existing folder.
    """
    if base is not None:
        return str(base)
    candidates = base_model_candidates(adapter_dir, saved)
    for _, path in candidates:
        if Path(path).is_dir():
            return path
    tried = "; ".join(f"{where}: {path}" for where, path in candidates) or "none recorded"
    raise ExportError(f"{adapter_dir}: base model folder not found (tried {tried}); pass it with --base")


def export_adapter_folder(adapter_dir: Path, out: Path, dtype: torch.dtype, base: str | Path | None = None) -> Path:
    """Export an adapter folder written by training (adapter_config.json + adapter_model.safetensors).

    Args:
        adapter_dir: the adapter folder (a run's `final/`).
        out: the folder to write.
        dtype: dtype of the saved floating-point weights.
        base: the base model folder; by default the one recorded in adapter_config.json
            (base_model.name_or_path) or in training_config.yaml beside it (model.path).

    Returns:
        `out` (see `export_adapted_model`).

    Raises:
        ExportError: the folder is not a LLaMA-Adapter, the base model is not found or does not
            fit the adapter, or the adapter cannot be served.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuner.adapters.llama_adapter import AdapterMismatchError, LlamaAdapterConfigError, UnsupportedModelError

    adapter_dir = Path(adapter_dir)
    saved = _read_adapter_config(adapter_dir)
    if saved["config"].get("multimodal"):
        raise ExportError(f"{adapter_dir / CONFIG_NAME}: config.multimodal is true; a multimodal LLaMA-Adapter cannot "
                          "be exported: vLLM serving of image prompts is not supported")
    base_path = resolve_base_model(adapter_dir, saved, base)
    try:  # in the export dtype: the model is only read and written, and a 7B base in fp32 needs 28 GB
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    except OSError as exc:
        raise ExportError(f"{adapter_dir}: cannot load the base model {base_path!r}: {exc}") from None
    try:
        load_llama_adapter(model, adapter_dir)
    except (AdapterMismatchError, UnsupportedModelError, LlamaAdapterConfigError) as exc:
        raise ExportError(f"{adapter_dir}: {exc}") from None
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_path
    return export_adapted_model(model, AutoTokenizer.from_pretrained(tokenizer_dir), out, dtype)
