"""Fixtures of the diagnostics tests: an in-process world of one for DeepSpeed engines."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, ContextManager

import pytest

from tuner.engine import free_port


@contextlib.contextmanager
def _world_of_one():
    """The environment of a one-rank DeepSpeed run, set only inside the block.

    The process group itself outlives the block (torch cannot re-create it), but no launcher
    variables leak into subprocesses started outside it.
    """
    import torch

    from tuner import engine as tuner_engine

    with pytest.MonkeyPatch.context() as patch:
        # The same PATH as the launcher subprocesses of tests/training_utils.run_env: the venv's
        # `ninja` and the system one disagree about DeepSpeed's JIT op build, so alternating
        # between them rebuilds the op (minutes) on every switch.
        patch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1", MASTER_ADDR="127.0.0.1",
                               MASTER_PORT=str(free_port())).items():
            patch.setenv(key, value)
        if not torch.distributed.is_initialized():
            tuner_engine.init_distributed()
        yield tuner_engine.DistInfo(0, 0, 1)


@pytest.fixture
def single_process_world():
    """A world of one for the whole test (start no subprocess training from such a test).

    A ZeRO-3 engine replaces torch.nn.functional.linear for the rest of the process (DeepSpeed's
    memory-efficient linear, "persists unless manually reset"); it is put back afterwards, since
    its autograd.Function breaks torch.func.jvp and would leak into every later test.
    """
    import torch

    linear = torch.nn.functional.linear
    with _world_of_one() as info:
        yield info
    torch.nn.functional.linear = linear


@pytest.fixture
def world_of_one() -> Callable[[], ContextManager]:
    """`with world_of_one(): ...` for tests that also start launcher subprocesses."""
    return _world_of_one


@pytest.fixture
def one_thread():
    """Tiny models run faster on one intra-op thread, and much faster on a shared, busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sentiment_model_dir(tmp_path_factory) -> Path:
    """A 2-layer tiny Llama whose tokenizer has the synthetic sentiment task's label words as tokens."""
    from tuner.diagnostics.fewshot import sentiment_corpus
    from tuner.tiny import build_tiny_model, train_tokenizer

    tokenizer = train_tokenizer(extra_texts=sentiment_corpus())
    return build_tiny_model("llama", tmp_path_factory.mktemp("sentiment") / "llama", tokenizer, num_hidden_layers=2)
