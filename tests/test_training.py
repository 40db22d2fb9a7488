"""The training step's loss normalisation, the LR schedule, and LoRA / QLoRA / full runs of `tuner train`."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.training_utils import losses, run_train, write_recipe
from tuner.data.batching import collate
from tuner.data.examples import load_examples
from tuner.engine import warmup_cosine
from tuner.export import export
from tuner.recipes.finetune import micro_batch_loss

SCRIPT = __import__("pathlib").Path(__file__).parent / "scripts" / "train_and_probe.py"


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_accumulated_micro_batches_of_uneven_lengths_give_the_one_batch_gradient(
        tiny_llama_dir, tiny_tokenizer, instruction_data):
    examples, _ = load_examples([instruction_data], tiny_tokenizer)
    rows = [[0], [1], [2], [3]]
    lengths = [len(examples[i].input_ids) for i in range(4)]
    assert len(set(lengths)) > 1, "the test needs uneven lengths"
    step_tokens = sum(examples[i].num_loss_tokens for i in range(4))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    pad = tiny_tokenizer.pad_token_id

    share, _ = micro_batch_loss(model, collate(examples, rows, pad), "sdpa", torch.float32, step_tokens)
    share.backward()
    one_batch = _grads(model)

    model.zero_grad()
    for micro in ([rows[0]], [rows[1], rows[2]], [rows[3]]):
        share, _ = micro_batch_loss(model, collate(examples, micro, pad), "sdpa", torch.float32, step_tokens)
        share.backward()
    accumulated = _grads(model)
    torch.testing.assert_close(accumulated, one_batch, rtol=1e-5, atol=1e-7)

    # The common shortcut (mean loss per micro-batch, averaged) weights tokens unevenly.
    model.zero_grad()
    for micro in ([rows[0]], [rows[1], rows[2]], [rows[3]]):
        batch = collate(examples, micro, pad)
        share, _ = micro_batch_loss(model, batch, "sdpa", torch.float32, batch["num_loss_tokens"])
        (share / 3).backward()
    assert (_grads(model) - one_batch).abs().max() > 1e-3 * one_batch.abs().max()


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert factor(14) == pytest.approx(0.1)
    values = [factor(s) for s in range(4, 15)]
    assert values == sorted(values, reverse=True)


@pytest.mark.slow
def test_full_fine_tuning_writes_a_plain_hf_folder_and_metrics(tmp_path, tiny_llama_dir, instruction_data):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, instruction_data, out,
                          train={"max_steps": 12, "gradient_accumulation_steps": 2},
                          data={"packing": True})
    result = run_train(recipe)
    curve = losses(out)
    assert len(curve) == 12 and curve[-1] < curve[0] - 0.5
    assert f"final model: {out / 'final'}" in result.stdout
    assert (out / "loss.png").stat().st_size > 0 and any((out / "tensorboard").iterdir())
    final = AutoModelForCausalLM.from_pretrained(out / "final")
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "tokenizer.json").exists()
    trained, base = final.state_dict(), AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    assert any(not torch.equal(trained[k], base[k]) for k in base)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_lora_and_qlora_train_and_the_saved_adapter_reproduces_the_model(
        tmp_path, tiny_llama_dir, instruction_data, method):
    from peft import PeftModel
    from transformers import BitsAndBytesConfig

    out = tmp_path / method
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, instruction_data, out,
                          train={"method": method, "max_steps": 10, "lr": 3e-3},
                          lora={"r": 8, "alpha": 16, "dropout": 0.0})
    run_train(recipe, script=SCRIPT)
    curve = losses(out)
    assert curve[-1] < curve[0] - 0.2, curve
    assert (out / "final" / "adapter_model.safetensors").exists()
    kwargs = {}
    if method == "qlora":
        kwargs = dict(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32), device_map={"": "cpu"})
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, **kwargs)
        assert type(base.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    else:
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = PeftModel.from_pretrained(base, out / "final").eval()
    probe = torch.load(out / "probe_logits.pt")
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"]).logits
    torch.testing.assert_close(logits, probe["logits"], rtol=1e-5, atol=1e-5)
    if method == "lora":
        # `tuner export` merges the adapter: from the final folder and from the DeepSpeed checkpoint
        for source in (out / "final", out / "checkpoints" / "step_00000010"):
            merged_dir = export(source, tmp_path / f"merged_{source.name}", dtype="fp32")
            assert not (merged_dir / "adapter_config.json").exists()
            merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
            with torch.no_grad():
                torch.testing.assert_close(merged(input_ids=probe["input_ids"]).logits, probe["logits"],
                                           rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_llama_adapter_method_trains_and_its_final_folder_reloads(tmp_path, tiny_model_dirs, instruction_data):
    from tuner.adapters.llama_adapter import load_llama_adapter

    out = tmp_path / "adapter"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_dirs["gpt_bigcode"], instruction_data, out,
                          train={"method": "llama_adapter", "max_steps": 15, "lr": 0.2,
                                 "gradient_accumulation_steps": 2},
                          data={"max_examples": 4},  # one step per epoch: the same batch every step
                          llama_adapter={"adapter_len": 4, "adapter_layers": 2},
                          model={"gradient_checkpointing": True})
    run_train(recipe, script=SCRIPT)
    curve = losses(out)
    assert curve[-1] < curve[0] - 0.2, curve
    saved = {p.name for p in (out / "final").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= saved
    assert (out / "final" / "adapter_model.safetensors").stat().st_size < 100_000  # prompts and gates only
    model = load_llama_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt_bigcode"]), out / "final")
    probe = torch.load(out / "probe_logits.pt")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(input_ids=probe["input_ids"]).logits, probe["logits"],
                                   rtol=1e-5, atol=1e-5)
