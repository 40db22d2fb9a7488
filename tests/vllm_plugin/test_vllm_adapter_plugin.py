"""tuner's vLLM plugin: declared as an entry point, and what `register()` registers."""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib

import pytest

from tuner.export.hf_model import EXPORT_CLASSES
from tuner.export.vllm_plugin import ARCHITECTURES, register
from vllm_adapter_helpers import PLUGIN_GROUP, PLUGIN_NAME, PLUGIN_TARGET, installed_entry_point, tuner_source_root


def test_pyproject_declares_the_plugin_entry_point():
    pyproject = tomllib.loads((tuner_source_root() / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][PLUGIN_GROUP] == {PLUGIN_NAME: PLUGIN_TARGET}


def test_installed_tuner_exposes_the_plugin_to_vllm():
    declared = installed_entry_point()
    if declared is None:
        pytest.skip("the installed tuner distribution predates the vllm.general_plugins entry point; "
                    "reinstall it (pip install -e .) to make vLLM load the plugin without the test's dist-info")
    assert declared.value == PLUGIN_TARGET
    discovered = importlib.metadata.entry_points(group=PLUGIN_GROUP)
    assert PLUGIN_TARGET in {ep.value for ep in discovered if ep.name == PLUGIN_NAME}


def test_register_covers_every_exported_architecture_and_can_run_twice():
    from transformers import CONFIG_MAPPING
    from vllm import ModelRegistry

    assert set(ARCHITECTURES) == {model_class.__name__ for _, model_class in EXPORT_CLASSES.values()}
    register()
    register()
    assert set(ARCHITECTURES) <= set(ModelRegistry.get_supported_archs())
    for config_class, _ in EXPORT_CLASSES.values():
        assert CONFIG_MAPPING[config_class.model_type] is config_class
    for target in set(ARCHITECTURES.values()):
        module, name = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), name), type)
