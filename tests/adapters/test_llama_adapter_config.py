"""LlamaAdapterConfig validation: every bad value is named by its recipe field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.adapters import adapter_method
from tuner.adapters.llama_adapter import LlamaAdapterConfig, LlamaAdapterConfigError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"adapter_len": 0}, r"llama_adapter.adapter_len must be an integer >= 1 \(got 0\)"),
        ({"adapter_layers": 0}, r"llama_adapter.adapter_layers must be a layer count >= 1"),
        ({"adapter_layers": [3, 3]}, r"llama_adapter.adapter_layers must be a list of distinct layer indices"),
        ({"adapter_layers": [-1]}, r"llama_adapter.adapter_layers must be .*indices >= 0"),
        ({"gate": "sigmoid"}, r"llama_adapter.gate must be one of tanh_per_head, scalar \(got 'sigmoid'\)"),
        ({"prompt_init_std": 0}, r"llama_adapter.prompt_init_std must be a number > 0"),
        ({"multimodal": "yes"}, r"llama_adapter.multimodal must be true or false"),
        ({"vision_feature_layers": []}, r"llama_adapter.vision_feature_layers must be a non-empty list"),
        ({"visual_proj_hidden": -1}, r"llama_adapter.visual_proj_hidden must be an integer >= 0"),
        ({"early_fusion_layers": 1}, r"llama_adapter.early_fusion_layers must be null unless llama_adapter.multimodal"),
        (
            {"multimodal": True, "adapter_layers": [2, 3], "early_fusion_layers": [0, 2]},
            r"llama_adapter.early_fusion_layers must be disjoint from adapter_layers \(both hold \[2\]\)",
        ),
    ],
)
def test_bad_fields_are_named(fields, message):
    with pytest.raises(LlamaAdapterConfigError, match=message):
        LlamaAdapterConfig(**fields)


def test_layer_resolution_against_a_model_depth():
    assert LlamaAdapterConfig().resolve_layers(32) == (tuple(range(2, 32)), ())
    multimodal = LlamaAdapterConfig(adapter_layers=2, multimodal=True)
    assert multimodal.resolve_layers(4) == ((2, 3), (2, 3))
    early = LlamaAdapterConfig(adapter_layers=2, multimodal=True, early_fusion_layers=1)
    assert early.resolve_layers(4) == ((2, 3), (0,))
    with pytest.raises(LlamaAdapterConfigError, match=r"early_fusion_layers must be disjoint .* \(both hold \[2, 3\]\)"):
        LlamaAdapterConfig(adapter_layers=2, multimodal=True, early_fusion_layers=4).resolve_layers(4)
    with pytest.raises(LlamaAdapterConfigError, match=r"adapter_layers must be indices below the model's 4 layers"):
        LlamaAdapterConfig(adapter_layers=[1, 4]).resolve_layers(4)


def test_dict_round_trip_and_unknown_keys():
    config = LlamaAdapterConfig(adapter_len=4, adapter_layers=[0, 5], multimodal=True, vision_feature_layers=[-1, -4])
    assert LlamaAdapterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(LlamaAdapterConfigError, match="unknown llama_adapter field.*adapter_lenn"):
        LlamaAdapterConfig.from_dict({"adapter_lenn": 4})


def test_registry_names_the_known_methods():
    assert adapter_method("llama_adapter").section == "llama_adapter"
    assert adapter_method("qlora").section == "lora" and adapter_method("qlora").quantized_base
    with pytest.raises(ValueError, match="train.method 'lora_x' is not an adapter method; known: lora, qlora, llama_adapter"):
        adapter_method("lora_x")


def test_recipe_reads_the_llama_adapter_section_once_into_its_typed_config():
    from tuner.config import ConfigError, from_dict
    from tuner.recipes.args import RecipeConfig

    base = {"model": {"path": "m"}, "data": {"path": "d"}, "train": {"method": "llama_adapter"}}
    recipe = from_dict(RecipeConfig, {**base, "llama_adapter": {"adapter_len": 4, "adapter_layers": [1, 3]}})
    assert recipe.llama_adapter == LlamaAdapterConfig(adapter_len=4, adapter_layers=(1, 3))
    assert recipe.method_options() is recipe.llama_adapter
    assert from_dict(RecipeConfig, base).llama_adapter == LlamaAdapterConfig()
    with pytest.raises(ConfigError, match=r"^llama_adapter.adapter_len must be an integer >= 1 \(got 0\)$"):
        from_dict(RecipeConfig, {**base, "llama_adapter": {"adapter_len": 0}})


def test_alpaca_recipe_follows_the_paper():
    import yaml

    recipe_path = Path(__file__).resolve().parents[2] / "launch" / "recipes" / "llama_adapter_alpaca52k.yaml"
    text = recipe_path.read_text()
    assert text.startswith("# bash launch/train.sh launch/recipes/llama_adapter_alpaca52k.yaml\n")
    recipe = yaml.safe_load(text)
    config = LlamaAdapterConfig.from_dict(recipe["llama_adapter"])
    assert (config.adapter_len, config.adapter_layers, config.gate) == (10, 30, "tanh_per_head")
    train = recipe["train"]
    assert train["method"] == "llama_adapter"
    assert (train["epochs"], train["warmup_epochs"], train["min_lr"]) == (5, 2, 0.0)
    assert (train["lr"], train["lr_scaling"], train["lr_base_batch_size"]) == (9e-3, "linear", 256)
    assert (train["weight_decay"], train["adam_betas"]) == (0.02, [0.9, 0.95])
    assert recipe["data"]["max_length"] == 512
