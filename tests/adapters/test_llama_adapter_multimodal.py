"""Multimodal LLaMA-Adapter with a tiny random CLIP, trained on ScienceQA-style examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llama_adapter_helpers import adapted, build_tiny_clip, load_base, open_gates
from llama_adapter_helpers import scienceqa_batch as build_scienceqa_batch
from tuner.adapters.llama_adapter import (
    LlamaAdapterConfig,
    adapter_parameters,
    llama_adapter_images,
    load_llama_adapter,
    save_llama_adapter,
)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def scienceqa_batch(tmp_path_factory, tiny_tokenizer) -> dict:
    """Two training problems: pid 1 text-only, pid 2 with an image."""
    return build_scienceqa_batch(tmp_path_factory.mktemp("scienceqa"), tiny_tokenizer)


def _multimodal(folder, clip_dir, **fields):
    config = LlamaAdapterConfig(adapter_len=4, adapter_layers=2, multimodal=True, vision_model=str(clip_dir), **fields)
    return adapted(folder, config, seed=4)


def _rows(batch: dict, rows: list[int]) -> dict:
    return {key: value[rows] for key, value in batch.items()}


def _projection_grad(model) -> float:
    grads = [p.grad for n, p in adapter_parameters(model) if "llama_adapter_vision.proj" in n]
    assert grads, "the projection is trainable"
    return sum(0.0 if g is None else g.abs().sum().item() for g in grads)


def _example_losses(model, batch) -> list[float]:
    with torch.no_grad():
        return [model(**_rows(batch, [row])).loss.item() for row in range(batch["input_ids"].shape[0])]


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode"])
def test_an_example_with_an_image_and_one_without_both_train(tiny_model_dirs, clip_dir, scienceqa_batch, arch):
    model = _multimodal(tiny_model_dirs[arch], clip_dir)
    assert not any(p.requires_grad for p in model.llama_adapter_vision.encoder.parameters()), "CLIP stays frozen"
    before = _example_losses(model, scienceqa_batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(8):
        model(**scienceqa_batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = _example_losses(model, scienceqa_batch)
    assert after[0] < before[0] - 0.05 and after[1] < before[1] - 0.05, (before, after)


def test_projection_learns_only_from_examples_with_an_image(tiny_llama_dir, clip_dir, scienceqa_batch):
    model = _multimodal(tiny_llama_dir, clip_dir)
    open_gates(model)
    model(**_rows(scienceqa_batch, [0])).loss.backward()  # text-only example
    assert _projection_grad(model) == 0.0
    model.zero_grad()
    model(**_rows(scienceqa_batch, [1])).loss.backward()  # example with an image
    assert _projection_grad(model) > 0.0

    with torch.no_grad():
        text_only = _rows(scienceqa_batch, [0])
        no_pixels = {k: v for k, v in text_only.items() if not k.startswith("adapter_")}
        # The image-less row is computed exactly as without any image input...
        assert torch.equal(model(**text_only).logits, model(**no_pixels).logits)
        # ...while the image row depends on its pixels.
        image_row = _rows(scienceqa_batch, [1])
        other_image = dict(image_row, adapter_pixel_values=torch.randn_like(image_row["adapter_pixel_values"]))
        assert not torch.allclose(model(**image_row).logits, model(**other_image).logits, atol=1e-4)


def test_generation_with_an_image_uses_the_cache_and_matches_full_forwards(tiny_llama_dir, clip_dir, scienceqa_batch):
    model = _multimodal(tiny_llama_dir, clip_dir).eval()
    open_gates(model)
    image_row = _rows(scienceqa_batch, [1])
    prompt_length = int((image_row["labels"][0] == -100).sum())
    prompt = image_row["input_ids"][:, :prompt_length]
    pixels = image_row["adapter_pixel_values"]
    with torch.no_grad(), llama_adapter_images(model, pixels):
        generated = model.generate(prompt, max_new_tokens=6, do_sample=False, num_beams=1)
    sequence = prompt
    with torch.no_grad():
        for _ in range(6):
            logits = model(sequence, adapter_pixel_values=pixels).logits
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        with_image, without_image = model(sequence, adapter_pixel_values=pixels).logits, model(sequence).logits
    assert torch.equal(generated, sequence)
    assert model.llama_adapter_vision.pending_feature is None, "the context manager cleans up"
    assert not torch.allclose(with_image, without_image, atol=1e-4), "the image conditions generation"


def test_v2_early_fusion_sends_the_image_only_to_the_early_layers(tiny_llama_dir, clip_dir, scienceqa_batch):
    model = _multimodal(tiny_llama_dir, clip_dir, early_fusion_layers=1)
    open_gates(model)
    layers = model.model.layers
    assert layers[0].self_attn.llama_adapter.receives_image
    assert not layers[2].self_attn.llama_adapter.receives_image and not hasattr(layers[1].self_attn, "llama_adapter")
    image_row = _rows(scienceqa_batch, [1])
    no_pixels = {k: v for k, v in image_row.items() if not k.startswith("adapter_")}
    with torch.no_grad():
        assert not torch.allclose(model(**image_row).logits, model(**no_pixels).logits, atol=1e-4)
        layers[0].self_attn.llama_adapter.gate.zero_()  # close the early layer: the image has no way in
        assert torch.equal(model(**image_row).logits, model(**no_pixels).logits)


def test_multimodal_adapter_round_trips_with_its_vision_model(tiny_llama_dir, clip_dir, scienceqa_batch, tmp_path):
    model = _multimodal(tiny_llama_dir, clip_dir, vision_feature_layers=(-1, 1), visual_proj_hidden=0)
    open_gates(model)
    out = save_llama_adapter(model, tmp_path / "adapter")
    reloaded = load_llama_adapter(load_base(tiny_llama_dir), out)  # CLIP comes back from vision_model
    with torch.no_grad():
        assert torch.equal(reloaded(**scienceqa_batch).logits, model(**scienceqa_batch).logits)
    other_clip = build_tiny_clip(tmp_path / "other_clip", image_size=64)
    from transformers import CLIPVisionModel

    with pytest.raises(ValueError, match=r"different vision model .*image_size 32 != 64"):
        load_llama_adapter(load_base(tiny_llama_dir), out, vision_model=CLIPVisionModel.from_pretrained(other_clip))


def test_beam_search_repeats_the_image_per_beam_and_wrong_batches_fail(tiny_llama_dir, clip_dir, scienceqa_batch):
    model = _multimodal(tiny_llama_dir, clip_dir).eval()
    open_gates(model)
    pixels = scienceqa_batch["adapter_pixel_values"][1:]
    prompt = scienceqa_batch["input_ids"][1:, :10]
    with torch.no_grad(), llama_adapter_images(model, pixels):
        beams = model.generate(prompt, max_new_tokens=3, num_beams=3, num_return_sequences=3, do_sample=False)
    assert beams.shape == (3, 13)
    with torch.no_grad(), llama_adapter_images(model, scienceqa_batch["adapter_pixel_values"]):
        with pytest.raises(ValueError, match="image features for 2 examples but a batch of 3"):
            model(torch.cat([prompt] * 3))
