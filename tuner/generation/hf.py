"""transformers `generate` behind the `Generator` interface.

The reference backend: slow, but it needs nothing beyond transformers and gives the same greedy
text as vLLM. Sampling options mean what they mean in vLLM: the model's own
`generation_config.json` sampling defaults (top_k=50, repetition penalties, ...) are overridden,
stop strings are cut off and never returned, and chat prompts are rendered with the tokenizer's
chat template and tokenized without adding special tokens again.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from tqdm.auto import tqdm

from tuner.generation.base import GenerationResult, Generator, Message, ResultCallback, SamplingConfig
from tuner.generation.stops import greedy_repeats, truncate_at_stop

log = logging.getLogger(__name__)


class _StopOnStrings:
    """A `StoppingCriteria` that ends a sequence once its generated text holds a stop string."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [any(s in text for s in self.stop) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class HFGenerator(Generator):
    """Generate with `AutoModelForCausalLM.generate`, a batch of prompts at a time.

    Args:
        model: a folder or hub name for `from_pretrained`.
        batch_size: prompts per `generate` call (left-padded).
        dtype: torch dtype name for `from_pretrained` ("float32", "bfloat16", "auto").
        device: "cpu", "cuda", ...; default cuda when available.
    """

    backend = "hf"

    def __init__(self, model: str, batch_size: int = 8, dtype: str = "float32", device: str | None = None,
                 trust_remote_code: bool = False, show_progress: bool = False) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.model_name = str(model)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.show_progress = show_progress
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_name, dtype=torch_dtype, trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")

    def generation_kwargs(self, sampling: SamplingConfig) -> dict[str, Any]:
        decode_n, _ = greedy_repeats(sampling.n, sampling.temperature)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=decode_n,
            do_sample=sampling.temperature > 0,
            # vLLM's meaning: no repetition penalty unless asked for (a model's
            # generation_config.json would otherwise fill it in).
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
        if sampling.temperature > 0:
            # top_k=0 switches off transformers' default top-k of 50, which vLLM does not apply.
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        return kwargs

    def effective_sampling(self, sampling: SamplingConfig) -> dict:
        kwargs = self.generation_kwargs(sampling)
        kwargs.update(stop=list(sampling.stop), seed=sampling.seed,
                      repeat_each=greedy_repeats(sampling.n, sampling.temperature)[1])
        return kwargs

    def _generate_batch(self, texts: list[str], sampling: SamplingConfig, add_special_tokens: bool):
        import torch

        kwargs = self.generation_kwargs(sampling)
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=add_special_tokens).to(self.device)
        prompt_len = encoded.input_ids.shape[1]
        if sampling.stop:
            kwargs["stopping_criteria"] = [_StopOnStrings(self.tokenizer, sampling.stop, prompt_len)]
        with torch.inference_mode():
            output = self.model.generate(**encoded, **kwargs)
        new_tokens = output[:, prompt_len:]
        eos_ids = kwargs["eos_token_id"]
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        decoded = []
        for row in new_tokens.tolist():
            ended_by_eos = any(t in eos_ids for t in row)
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, sampling.stop)
            finish = "stop" if stopped or ended_by_eos else "length"
            decoded.append((text, finish))
        return decoded

    def _run(self, texts: Sequence[str], sampling: SamplingConfig, on_result: ResultCallback | None,
             add_special_tokens: bool) -> list[GenerationResult]:
        import torch

        decode_n, repeat = greedy_repeats(sampling.n, sampling.temperature)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        results: list[GenerationResult] = []
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="hf generate", disable=not self.show_progress):
            batch = list(texts[start:start + self.batch_size])
            decoded = self._generate_batch(batch, sampling, add_special_tokens)
            for offset in range(len(batch)):
                rows = decoded[offset * decode_n:(offset + 1) * decode_n]
                result = GenerationResult(texts=[t for t, _ in rows for _ in range(repeat)],
                                          finish_reasons=[f for _, f in rows for _ in range(repeat)])
                results.append(result)
                if on_result is not None:
                    on_result(start + offset, result)
        return results

    def complete(self, prompts: Sequence[str], sampling: SamplingConfig,
                 on_result: ResultCallback | None = None) -> list[GenerationResult]:
        return self._run(prompts, sampling, on_result, add_special_tokens=True)

    def chat(self, conversations: Sequence[Sequence[Message]], sampling: SamplingConfig,
             on_result: ResultCallback | None = None) -> list[GenerationResult]:
        rendered = [self.tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
                    for c in conversations]
        return self._run(rendered, sampling, on_result, add_special_tokens=False)

    def describe(self) -> dict:
        import transformers

        return {"backend": self.backend, "model": self.model_name, "device": self.device,
                "dtype": self.dtype, "batch_size": self.batch_size,
                "transformers_version": transformers.__version__}

    def close(self) -> None:
        self.model = None
