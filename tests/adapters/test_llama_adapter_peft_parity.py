"""In scalar-gate (no tanh) mode LLaMA-Adapter computes what peft's AdaptionPrompt computes."""

from __future__ import annotations

import pytest
import torch
from peft import AdaptionPromptConfig, get_peft_model

from llama_adapter_helpers import adapted, load_base, token_batch
from tuner.adapters.llama_adapter import LlamaAdapterConfig, adapter_parameters


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_scalar_gate_mode_matches_peft_adaption_prompt(tiny_model_dirs, arch):
    folder = tiny_model_dirs[arch]
    ours = adapted(folder, LlamaAdapterConfig(adapter_len=5, adapter_layers=3, gate="scalar"), seed=11)
    peft_model = get_peft_model(
        load_base(folder), AdaptionPromptConfig(adapter_len=5, adapter_layers=3, task_type="CAUSAL_LM")
    )
    peft_params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for index, (name, param) in enumerate(adapter_parameters(ours)):
            layer_prefix = "base_model.model." + name.rsplit(".llama_adapter.", 1)[0]
            if name.endswith("prompt"):
                peft_params[f"{layer_prefix}.adaption_prompt"].copy_(param.unsqueeze(0))
            else:
                param.fill_(0.3 + 0.1 * index)
                peft_params[f"{layer_prefix}.adaption_gate"].copy_(param)

    ids = token_batch(ours, batch=3, length=16)
    ours_loss = ours(ids, labels=ids)
    peft_loss = peft_model(input_ids=ids, labels=ids)
    torch.testing.assert_close(ours_loss.logits, peft_loss.logits, atol=1e-5, rtol=0)
    assert not torch.allclose(ours_loss.logits, load_base(folder)(ids).logits, atol=1e-3)

    ours_loss.loss.backward()
    peft_loss.loss.backward()
    for name, param in adapter_parameters(ours):
        layer_prefix = "base_model.model." + name.rsplit(".llama_adapter.", 1)[0]
        suffix = "adaption_prompt" if name.endswith("prompt") else "adaption_gate"
        reference = peft_params[f"{layer_prefix}.{suffix}"].grad.reshape(param.grad.shape)
        torch.testing.assert_close(param.grad, reference, atol=1e-5, rtol=1e-4)
