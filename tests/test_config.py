"""Recipe validation: unknown keys and bad values fail at start, naming the key."""

from __future__ import annotations

import pytest

from tuner.config import ConfigError, load_recipe
from tuner.recipes.args import RecipeConfig

BASE = """
model: {path: some/model}
data: {path: data.jsonl}
train: {lr: 1e-4, epochs: 2}
"""


def load(tmp_path, text: str, overrides=()):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_recipe(RecipeConfig, path, list(overrides))


def test_valid_recipe_and_overrides(tmp_path):
    config = load(tmp_path, BASE, ["train.lr=3e-5", "data.packing=true", "train.adam_betas=[0.9, 0.95]"])
    assert config.train.lr == 3e-5 and config.data.packing and config.train.adam_betas == (0.9, 0.95)
    assert config.train.epochs == 2.0 and config.deepspeed.config is None


@pytest.mark.parametrize("text, overrides, message", [
    (BASE + "trian: {lr: 1}\n", [], r"trian: unknown key"),
    (BASE, ["train.learning_rate=1e-4"], r"train.learning_rate: unknown key \(known keys of train:"),
    (BASE, ["train.lr=fast"], r"train.lr: expected a number, got 'fast'"),
    (BASE, ["train.lr=-1"], r"train.lr: must be positive, got -1"),
    (BASE, ["train.micro_batch_size=2.5"], r"train.micro_batch_size: expected an integer"),
    (BASE, ["train.method=prefix"], r"train.method: must be one of 'full', 'lora', 'qlora', 'llama_adapter'"),
    (BASE, ["data.packing=maybe"], r"data.packing: expected true or false"),
    (BASE, ["train.warmup_steps=10", "train.warmup_ratio=0.1"], r"set only one of train.warmup_steps"),
    (BASE, ["train.adam_betas=[0.9]"], r"train.adam_betas: expected 2 values"),
    ("data: {path: d.jsonl}\n", [], r"model: required key is missing"),
    (BASE, ["model.dtype=fp8"], r"model.dtype: must be one of 'bf16', 'fp16', 'fp32'"),
    (BASE, ["llama_adapter.adapter_len=4"], r"llama_adapter: options given but train.method is 'full'"),
    (BASE, ["train.method=llama_adapter", "llama_adapter.adapter_len=0"], r"llama_adapter.adapter_len must be"),
    (BASE, ["train.method=llama_adapter", "llama_adapter.prompt_len=4"], r"llama_adapter.prompt_len: unknown key \(known keys of llama_adapter:"),
])
def test_bad_recipes_fail_naming_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text, overrides)


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.yaml:2: invalid YAML: mapping values are not allowed"):
        load(tmp_path, "model: {path: x}\ndata: path: y\ntrain: {}\n")


def test_deepspeed_config_conflicts_are_reported(tmp_path):
    from tuner.engine import resolve_deepspeed_config

    raw = {"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}
    with pytest.raises(ConfigError, match=r"train_micro_batch_size_per_gpu=8 conflicts with the recipe"):
        resolve_deepspeed_config(raw, micro_batch_size=4, accumulation=1, world_size=1, max_grad_norm=1.0,
                                 dtype="bf16")
    ok = resolve_deepspeed_config({"train_micro_batch_size_per_gpu": "auto"}, micro_batch_size=4,
                                  accumulation=2, world_size=2, max_grad_norm=None, dtype="bf16")
    assert ok["train_batch_size"] == 16 and ok["bf16"]["enabled"] and not ok["fp16"]["enabled"]
    assert ok["gradient_clipping"] == 0.0


def test_every_shipped_recipe_is_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).parent.parent / "launch" / "recipes").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        config = load_recipe(RecipeConfig, recipe)
        from tuner.engine import load_deepspeed_config

        assert load_deepspeed_config(config.deepspeed.config)["zero_optimization"]["stage"] in (0, 2, 3)
