"""Multimodal LLaMA-Adapter (arXiv 2303.16199, §4.3): a global image feature added to the prompts.

A frozen CLIP vision encoder turns each image into a global feature (the class token after the
post layer norm, from one layer or several concatenated: the paper's multi-scale feature); a small
trainable MLP projects it to the language model's hidden size, and the result is added to every
prompt vector of the layers that receive images. Examples without an image get no image term, and
the projection receives gradient only from examples that have one.

How images reach the layers: the training batch carries `adapter_pixel_values` [B, 3, S, S] and
`adapter_image_mask` [B] (bool, which rows hold a real image) as keyword arguments of
`model(...)`. A forward pre-hook on the causal LM pops them, encodes the images once, and passes
the projected features down as `llama_adapter_image_feature`; transformers forwards extra keyword
arguments from the causal LM through the decoder layers into each attention module (Llama,
Mistral and GPTBigCode alike), where the adapter's attention pre-hook takes it out again so the
attention kernels never see it. Travelling as an argument (not as state on the model) keeps it
correct under gradient checkpointing, whose recomputation replays the same arguments.

`generate()` refuses unknown keyword arguments, so generation with an image uses the
`llama_adapter_images(model, pixel_values)` context manager instead.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

PIXEL_VALUES_KWARG = "adapter_pixel_values"
IMAGE_MASK_KWARG = "adapter_image_mask"
IMAGE_FEATURE_KWARG = "llama_adapter_image_feature"
VISION_MODULE_NAME = "llama_adapter_vision"


class VisualPromptEncoder(nn.Module):
    """Frozen CLIP vision encoder plus the trainable projection to the LM's hidden size."""

    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        feature_layers: tuple[int, ...],
        proj_hidden: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.feature_layers = feature_layers
        feature_dim = encoder.config.hidden_size * len(feature_layers)
        if proj_hidden:
            self.proj = nn.Sequential(
                nn.Linear(feature_dim, proj_hidden), nn.GELU(), nn.Linear(proj_hidden, hidden_size)
            ).to(dtype=dtype, device=device)
        else:
            self.proj = nn.Linear(feature_dim, hidden_size).to(dtype=dtype, device=device)
        self.feature_dim = feature_dim
        self.hidden_size = hidden_size
        # Features set by `llama_adapter_images` for generate(), used when no pixels are passed.
        self.pending_feature: torch.Tensor | None = None

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Global CLIP features [N, feature_dim] of N images (no gradient: the encoder is frozen)."""
        encoder_dtype = next(self.encoder.parameters()).dtype
        with torch.no_grad():
            if self.feature_layers == (-1,):
                return self.encoder(pixel_values=pixel_values.to(encoder_dtype)).pooler_output
            out = self.encoder(pixel_values=pixel_values.to(encoder_dtype), output_hidden_states=True)
            post_norm = self.encoder.post_layernorm
            return torch.cat([post_norm(out.hidden_states[i][:, 0]) for i in self.feature_layers], dim=-1)

    def forward(self, pixel_values: torch.Tensor, image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected features [B, hidden]; rows whose `image_mask` is False are exactly zero.

        Only the rows with an image go through CLIP and the projection, so examples without one
        contribute no gradient to the projection.
        """
        batch = pixel_values.shape[0]
        if image_mask is None:
            image_mask = torch.ones(batch, dtype=torch.bool, device=pixel_values.device)
        if image_mask.shape != (batch,):
            raise ValueError(
                f"{IMAGE_MASK_KWARG} must have shape [{batch}] (one flag per example), got {tuple(image_mask.shape)}"
            )
        rows = image_mask.to(torch.bool).nonzero().squeeze(1)
        proj_dtype = self.proj_dtype()
        if rows.numel():
            features = self.image_features(pixel_values.index_select(0, rows))
        else:  # keep calling the projection so every step runs the same modules (ZeRO-3 tracing)
            features = torch.zeros(0, self.feature_dim, device=pixel_values.device)
        projected = self.proj(features.to(proj_dtype))
        out = torch.zeros(batch, self.hidden_size, dtype=projected.dtype, device=projected.device)
        return out.index_copy(0, rows, projected)

    def proj_dtype(self) -> torch.dtype:
        return next(self.proj.parameters()).dtype


def load_vision_encoder(path: str | None, vision_model: nn.Module | None) -> nn.Module:
    """The given vision model object, else `CLIPVisionModel.from_pretrained(path)`.

    Raises:
        ValueError: neither is given.
    """
    if vision_model is not None:
        return vision_model
    if path is None:
        raise ValueError(
            "llama_adapter.multimodal is true but no vision encoder was given: set llama_adapter.vision_model "
            "to a CLIPVisionModel folder or pass vision_model="
        )
    from transformers import CLIPVisionModel

    return CLIPVisionModel.from_pretrained(path)


def vision_fingerprint(encoder: nn.Module) -> dict:
    """The vision encoder's shape, recorded in a saved adapter and checked when it is loaded."""
    config = encoder.config
    keys = ("model_type", "hidden_size", "num_hidden_layers", "image_size", "patch_size")
    return {key: getattr(config, key) for key in keys if getattr(config, key, None) is not None}


def encode_images_hook(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Causal-LM forward pre-hook: pixels (or pending features) -> `llama_adapter_image_feature`."""
    encoder: VisualPromptEncoder = getattr(model, VISION_MODULE_NAME)
    pixel_values = kwargs.pop(PIXEL_VALUES_KWARG, None)
    image_mask = kwargs.pop(IMAGE_MASK_KWARG, None)
    if pixel_values is not None:
        kwargs[IMAGE_FEATURE_KWARG] = encoder(pixel_values, image_mask)
    elif image_mask is not None:
        raise ValueError(f"{IMAGE_MASK_KWARG} was passed without {PIXEL_VALUES_KWARG}")
    elif encoder.pending_feature is not None:
        kwargs[IMAGE_FEATURE_KWARG] = encoder.pending_feature
    return args, kwargs


def drop_image_feature_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Attention pre-hook of layers without prompts: keep the feature away from attention kernels."""
    kwargs.pop(IMAGE_FEATURE_KWARG, None)
    return args, kwargs


@contextlib.contextmanager
def llama_adapter_images(
    model: nn.Module, pixel_values: torch.Tensor, image_mask: torch.Tensor | None = None
) -> Iterator[None]:
    """Condition every forward inside the block (e.g. `model.generate`) on these images.

    The images are encoded once; generate()'s batch expansion (beams, several return sequences)
    repeats them per example.

    Example:
        with llama_adapter_images(model, pixel_values, image_mask):
            output_ids = model.generate(input_ids, max_new_tokens=16)
    """
    encoder: VisualPromptEncoder | None = getattr(model, VISION_MODULE_NAME, None)
    if encoder is None:
        raise ValueError("this model has no multimodal LLaMA-Adapter (llama_adapter.multimodal is false)")
    with torch.no_grad():
        encoder.pending_feature = encoder(pixel_values, image_mask)
    try:
        yield
    finally:
        encoder.pending_feature = None
