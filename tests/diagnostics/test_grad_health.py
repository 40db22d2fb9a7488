"""The gradient-health monitor: alarm rules, every ZeRO layout in-process, bad initialisations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.training_utils import run_train, write_recipe
from tuner import engine as tuner_engine
from tuner.config import ConfigError, load_recipe
from tuner.diagnostics.cli import main as diagnose
from tuner.diagnostics.config import DiagnosticsArgs
from tuner.diagnostics.grad_alarms import AlarmRules, AlarmState, depth_growth, layer_key, module_type
from tuner.diagnostics.grad_health import GradientHealthError, GradientHealthMonitor
from tuner.diagnostics.grad_report import read_jsonl
from tuner.recipes.args import RecipeConfig
from tuner.recipes.finetune import fit, setup
from tuner.tiny import tiny_config


def test_the_recipe_section_is_validated_with_the_key_named(tmp_path, tiny_llama_dir, instruction_data):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, instruction_data, tmp_path / "out")
    config = load_recipe(RecipeConfig, recipe, ["diagnostics.grad_monitor_every_n_steps=5"])
    assert config.diagnostics.grad_monitor_every_n_steps == 5 and config.diagnostics.grad_monitor_enabled
    assert not load_recipe(RecipeConfig, recipe).diagnostics.grad_monitor_enabled
    with pytest.raises(ConfigError, match="diagnostics.grad_monitor_every_n_steps: must be positive"):
        load_recipe(RecipeConfig, recipe, ["diagnostics.grad_monitor_every_n_steps=0"])
    with pytest.raises(ConfigError, match="diagnostics.grad_monitor_explode_factr: unknown key"):
        load_recipe(RecipeConfig, recipe, ["diagnostics.grad_monitor_explode_factr=3"])
    assert diagnose(["grad-health", str(tmp_path / "nothing")]) == 2


def test_parameter_names_group_into_layers_and_module_types():
    assert layer_key("model.layers.3.self_attn.q_proj.weight") == "layers.3"
    assert layer_key("base_model.model.model.layers.12.mlp.up_proj.lora_A.default.weight") == "layers.12"
    assert layer_key("transformer.h.0.attn.c_attn.weight") == "layers.0"
    assert layer_key("model.embed_tokens.weight") == "embed_tokens"
    assert layer_key("lm_head.weight") == "lm_head"
    assert module_type("model.layers.3.self_attn.q_proj.weight") == "self_attn.q_proj"
    assert module_type("base_model.model.model.layers.1.mlp.up_proj.lora_A.default.weight") == "mlp.up_proj.lora_A"
    assert module_type("model.layers.0.self_attn.llama_adapter.gate") == "self_attn.llama_adapter"
    assert module_type("model.norm.weight") == "norm"


def test_history_rules_fire_on_a_jump_and_a_collapse_but_not_on_noise():
    state = AlarmState(AlarmRules(explode_factor=10, collapse_factor=100, history=5), ["w"])
    for step, value in enumerate([1.0, 1.5, 0.7, 2.0, 1.2], start=1):  # ordinary step-to-step noise
        assert state.check(step, {"layers.0": value}, [value], [10.0]) == []
    exploded = state.check(6, {"layers.0": 30.0}, [30.0], [10.0])
    assert [(a.kind, a.reason, a.where) for a in exploded] == [("exploding", "history", "layers.0")]
    collapsed = state.check(7, {"layers.0": 1e-4}, [1e-4], [10.0])
    assert [(a.kind, a.reason) for a in collapsed] == [("vanishing", "history")]


def test_depth_rule_compares_the_first_and_last_layers_over_a_few_steps():
    state = AlarmState(AlarmRules(depth_ratio=20, depth_window=3), [])
    steep = {f"layers.{i}": 3.0 ** (4 - i) for i in range(5)}  # 81x from the last layer back to the first
    flat = {f"layers.{i}": 1.0 for i in range(5)}
    assert [(a.kind, a.reason, a.where) for a in state.check(1, steep, [], [])] == [("exploding", "depth", "layers.0")]
    assert state.check(2, flat, [], [])  # the median of (81, 1) is still 41
    assert state.check(3, flat, [], []) == []
    shrinking = {f"layers.{i}": 0.3 ** (4 - i) for i in range(5)}
    fresh = AlarmState(AlarmRules(depth_ratio=20), [])
    assert [(a.kind, a.reason) for a in fresh.check(1, shrinking, [], [])] == [("vanishing", "depth")]


def test_depth_growth_is_the_per_layer_factor_towards_the_input():
    assert depth_growth({f"layers.{i}": 3.0 ** (4 - i) for i in range(5)}) == pytest.approx(3.0)
    assert depth_growth({f"layers.{i}": 0.5 ** (4 - i) for i in range(5)}) == pytest.approx(0.5)
    assert depth_growth({"layers.0": 1.0, "layers.1": 2.0, "embed_tokens": 5.0}) is None


def test_a_nonfinite_weight_is_named_and_zero_gradients_need_patience():
    state = AlarmState(AlarmRules(), ["a", "b"])
    alarms = state.check(1, {}, [float("nan"), 0.0], [float("inf"), 1.0])
    assert [(a.kind, a.reason, a.where) for a in alarms] == [("nonfinite", "weight", "a"), ("nonfinite", "gradient", "a")]
    assert state.check(2, {}, [1.0, 0.0], [1.0, 1.0]) == []  # b: zero for the 2nd time
    dead = state.check(3, {}, [1.0, 0.0], [1.0, 1.0])
    assert [(a.kind, a.reason, a.where) for a in dead] == [("vanishing", "zero", "b")]


# --- in-process DeepSpeed engines -----------------------------------------------------------------


def _engine(model, stage: int, dtype: str = "fp32", lr: float = 1e-3, offload: bool = False):
    zero = {"stage": stage}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu"}
    config = tuner_engine.resolve_deepspeed_config({"zero_optimization": zero}, micro_batch_size=4,
                                           accumulation=1, world_size=1, max_grad_norm=1.0, dtype=dtype)
    return tuner_engine.build_engine(model, config, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                             lr_lambda=lambda step: 1.0)


def _train(engine, monitor, steps: int, seed: int = 0, first_step: int = 1) -> list[dict]:
    """Steps on random token batches; returns per step the engine's own gradient norm, the
    gradients and the weights before and after the step."""
    generator = torch.Generator().manual_seed(seed)
    seen = []
    for step in range(first_step, first_step + steps):
        ids = torch.randint(10, 1000, (4, 32), generator=generator)
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        grads = {n: p.grad.detach().clone() for n, p in engine.module.named_parameters() if p.grad is not None}
        before = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
        monitor.on_gradients(step)
        engine.step()
        monitor.on_step_end(step)
        after = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
        seen.append({"ds_norm": engine.get_global_grad_norm(), "grads": grads, "before": before, "after": after})
    return seen


def _model(tokenizer, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config("llama", tokenizer, **overrides), dtype=torch.float32)


def test_stage0_norms_are_the_per_layer_norms_of_the_gradients_and_of_the_actual_update(
        tmp_path, tiny_tokenizer, single_process_world):
    engine = _engine(_model(tiny_tokenizer), stage=0)
    monitor = GradientHealthMonitor(engine, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path)
    seen = _train(engine, monitor, steps=3)
    written = monitor.close()
    rows = read_jsonl(written["jsonl"])
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row, truth in zip(rows, seen):
        for key in ("layers.0", "layers.3", "embed_tokens", "lm_head"):
            names = [n for n in truth["grads"] if layer_key(n) == key]
            grad = math.sqrt(sum(truth["grads"][n].double().pow(2).sum().item() for n in names))
            update = math.sqrt(sum((truth["after"][n] - truth["before"][n]).double().pow(2).sum().item() for n in names))
            assert row["layers"][key]["grad_norm"] == pytest.approx(grad, rel=1e-5)
            assert row["layers"][key]["update_norm"] == pytest.approx(update, rel=1e-4)
        q_proj = [n for n in truth["grads"] if n.endswith("q_proj.weight")]
        assert row["module_types"]["self_attn.q_proj"]["grad_norm"] == pytest.approx(
            math.sqrt(sum(truth["grads"][n].double().pow(2).sum().item() for n in q_proj)), rel=1e-5)
    summary = json.loads(written["summary"].read_text())
    assert summary["healthy"] and summary["alarms"] == [] and summary["layout"] == "replicated"
    assert written["heatmap"].stat().st_size > 0


@pytest.mark.parametrize("stage,dtype,offload", [(1, "bf16", False), (2, "fp32", False), (3, "fp32", False),
                                                 (3, "fp32", True)])
def test_zero_stages_read_local_fragments_that_add_up_to_deepspeeds_own_gradient_norm(
        tmp_path, tiny_tokenizer, single_process_world, stage, dtype, offload):
    engine = _engine(_model(tiny_tokenizer), stage=stage, dtype=dtype, offload=offload)
    monitor = GradientHealthMonitor(engine, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path)
    assert monitor.reader.layout == ("partitioned" if stage == 3 else "fragments")
    seen = _train(engine, monitor, steps=2)
    rows = read_jsonl(monitor.close()["jsonl"])
    for row, truth in zip(rows, seen):
        assert row["global"]["grad_norm"] == pytest.approx(float(truth["ds_norm"]), rel=1e-5)
        assert 1e-4 < row["global"]["update_to_weight"] < 1e-1
        assert sorted(row["layers"]) == sorted(["embed_tokens", "norm", "lm_head"] + [f"layers.{i}" for i in range(4)])


def test_llama_adapter_under_zero2_reports_only_the_adapter_and_its_module_type(
        tmp_path, tiny_tokenizer, single_process_world):
    from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter

    model = add_llama_adapter(_model(tiny_tokenizer), LlamaAdapterConfig(adapter_len=4, adapter_layers=2))
    engine = _engine(model, stage=2, lr=1e-2)
    monitor = GradientHealthMonitor(engine, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path)
    seen = _train(engine, monitor, steps=2)
    rows = read_jsonl(monitor.close()["jsonl"])
    assert sorted(rows[0]["layers"]) == ["layers.2", "layers.3"]
    assert list(rows[0]["module_types"]) == ["self_attn.llama_adapter"]
    for row, truth in zip(rows, seen):
        assert row["global"]["grad_norm"] == pytest.approx(float(truth["ds_norm"]), rel=1e-5)
    assert rows[0]["layers"]["layers.2"]["update_norm"] > 0  # the zero-init gates moved


def test_a_resumed_run_keeps_the_records_up_to_the_checkpoint_and_their_history(tmp_path, tiny_tokenizer):
    model = _model(tiny_tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = DiagnosticsArgs(grad_monitor_every_n_steps=1)

    def steps(monitor, first, last):
        for step in range(first, last + 1):
            ids = torch.randint(10, 1000, (2, 16), generator=torch.Generator().manual_seed(step))
            model(input_ids=ids, labels=ids).loss.backward()
            monitor.on_gradients(step)
            optimizer.step()
            optimizer.zero_grad()
            monitor.on_step_end(step)

    first = GradientHealthMonitor(model, args, tmp_path)
    steps(first, 1, 4)
    first.close()
    resumed = GradientHealthMonitor(model, args, tmp_path, resume_step=2)
    assert [len(h) for h in resumed.alarms.history.values()] == [2] * len(resumed.alarms.history)
    steps(resumed, 3, 5)
    resumed.close()
    assert [r["step"] for r in read_jsonl(tmp_path / "grad_health.jsonl")] == [1, 2, 3, 4, 5]


def _alarms(monitor) -> list[dict]:
    return json.loads(monitor.close()["summary"].read_text())["alarms"]


def test_a_healthy_model_raises_no_alarm_and_a_huge_init_scale_raises_exploding(
        tmp_path, tiny_tokenizer, single_process_world, capsys):
    healthy = _engine(_model(tiny_tokenizer), stage=0)
    monitor = GradientHealthMonitor(healthy, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path / "ok")
    _train(healthy, monitor, steps=6)
    assert _alarms(monitor) == []

    huge = _engine(_model(tiny_tokenizer, initializer_range=1.0), stage=0)  # 50x the default std
    monitor = GradientHealthMonitor(huge, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path / "huge")
    _train(huge, monitor, steps=3)
    alarms = _alarms(monitor)
    assert {(a["kind"], a["reason"], a["where"]) for a in alarms} == {("exploding", "depth", "layers.0")}
    assert alarms[0]["first_step"] == 1 and alarms[0]["last_step"] == 3

    (tmp_path / "huge" / "grad_health.json").unlink()
    assert diagnose(["grad-health", str(tmp_path / "huge")]) == 0  # re-renders the summary from the records
    printed = capsys.readouterr().out
    assert "3 monitored steps (1..3), 1 alarm episodes" in printed and "exploding depth" in printed
    assert (tmp_path / "huge" / "grad_health.json").exists()


def test_a_saturated_activation_raises_vanishing_naming_the_dead_parameters(
        tmp_path, tiny_tokenizer, single_process_world):
    model = _model(tiny_tokenizer, hidden_act="relu", mlp_bias=True)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gate_proj.bias"):
                param.fill_(-100.0)  # every ReLU unit of the MLPs sits in its flat region
    engine = _engine(model, stage=0)
    monitor = GradientHealthMonitor(engine, DiagnosticsArgs(grad_monitor_every_n_steps=1), tmp_path)
    _train(engine, monitor, steps=4)
    (alarm,) = _alarms(monitor)
    assert (alarm["kind"], alarm["reason"], alarm["first_step"], alarm["last_step"]) == ("vanishing", "zero", 3, 4)
    assert "model.layers.2.mlp.gate_proj.weight" in alarm["params"]
    assert "model.layers.2.mlp.down_proj.bias" not in alarm["params"]  # after the ReLU: still learning
    assert not any("self_attn" in name for name in alarm["params"])


def test_a_nonfinite_weight_halts_training_before_the_next_step_naming_it(
        tmp_path, tiny_tokenizer, single_process_world):
    model = _model(tiny_tokenizer)
    engine = _engine(model, stage=0)
    args = DiagnosticsArgs(grad_monitor_every_n_steps=1, grad_monitor_halt_on_nonfinite=True)
    monitor = GradientHealthMonitor(engine, args, tmp_path)
    _train(engine, monitor, steps=2)
    with torch.no_grad():
        engine.module.model.layers[1].mlp.down_proj.weight[0, 0] = float("inf")
    with pytest.raises(GradientHealthError, match=r"^step 3: non-finite weight in model\.layers\.1\.mlp\.down_proj\.weight;"):
        _train(engine, monitor, steps=3, first_step=3)
    rows = read_jsonl(tmp_path / "grad_health.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["global"]["grad_norm"] == "nan" and rows[1]["global"]["grad_norm"] > 0
    summary = json.loads((tmp_path / "grad_health.json").read_text())
    assert {(a["kind"], a["reason"]) for a in summary["alarms"]} == {("nonfinite", "weight"), ("nonfinite", "gradient")}


# --- inside `tuner train` -------------------------------------------------------------------------


def _monitored_recipe(tmp_path, name, model_dir, data, deepspeed, **train):
    return write_recipe(tmp_path / f"{name}.yaml", model_dir, data, tmp_path / name, deepspeed=deepspeed,
                        train={"max_steps": 4, "micro_batch_size": 1, **train},
                        diagnostics={"grad_monitor_every_n_steps": 2})


@pytest.mark.slow
def test_zero3_on_two_ranks_reports_the_norms_of_the_same_steps_on_one_rank(
        tmp_path, tiny_llama_dir, instruction_data, world_of_one):
    """2 ranks x 1 row under ZeRO-3 (each rank sees only its partitions) against 1 rank x 2
    micro-batches without ZeRO, run in this process through the recipe API: same per-layer norms."""
    two = _monitored_recipe(tmp_path, "two", tiny_llama_dir, instruction_data, "zero3")
    run_train(two, nproc=2)
    one = _monitored_recipe(tmp_path, "one", tiny_llama_dir, instruction_data, "zero0", gradient_accumulation_steps=2)
    with world_of_one():
        fit(setup(load_recipe(RecipeConfig, one)))

    sharded, reference = read_jsonl(tmp_path / "two" / "grad_health.jsonl"), read_jsonl(tmp_path / "one" / "grad_health.jsonl")
    assert [r["step"] for r in sharded] == [r["step"] for r in reference] == [2, 4]
    for a, b in zip(sharded, reference):
        assert sorted(a["layers"]) == sorted(b["layers"])
        for key in a["layers"]:
            for field in ("grad_norm", "weight_norm", "update_norm"):
                assert a["layers"][key][field] == pytest.approx(b["layers"][key][field], rel=1e-3), (key, field)
    deepspeed_norms = {r["step"]: r["grad_norm"] for r in map(json.loads, (tmp_path / "two" / "metrics.jsonl").open())}
    for row in sharded:
        assert row["global"]["grad_norm"] == pytest.approx(deepspeed_norms[row["step"]], rel=1e-5)
    assert json.loads((tmp_path / "two" / "grad_health.json").read_text())["layout"] == "partitioned"
    assert (tmp_path / "two" / "grad_health.png").stat().st_size > 0
