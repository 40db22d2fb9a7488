"""Process plumbing for the sandbox: starting sandboxed interpreters (directly, or forked by the
zygote launcher), the sockets and pipes the harness talks to them through, and killing them.

Every sandboxed interpreter runs the same code (`child_source`: the codec, the isolation layers
and the role modules, compiled once per `Launcher`) and is told its role in a marshalled config
on its command line. What the roles do is in `wire`, `candidate`, `judge` and `launcher`.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tuner_eval.sandbox.policy import (DEVICE_PATHS, Limits, broad_read_paths, read_paths, site_package_dirs,
                                       split_site_packages)

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
CHILD_MODULES = ("codec.py", "datacodec.py", "isolation.py", "wire.py", "candidate.py", "judge.py", "launcher.py")
"""The files every sandboxed interpreter runs, in this order (each is self-contained apart from
the names the earlier ones define)."""


def child_source() -> str:
    """The code every sandboxed interpreter runs: codec, isolation, then the role modules."""
    parts = [(_HERE / name).read_text(encoding="utf-8") for name in CHILD_MODULES]
    return "\n\n".join(parts) + "\n\nmain()\n"


def kill_group(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log.warning("sandboxed process %d did not die after SIGKILL", process.pid)


class Launcher:
    """Starts sandboxed interpreters in their own working directories under `root`."""

    def __init__(self, root: Path, program_limits: Limits, launcher: str) -> None:
        self.root = root
        self.program_limits = program_limits
        self.launcher = launcher
        # Compiled once: every sandboxed interpreter loads this code object instead of compiling
        # ~40 KB of source at start-up.
        self._code_path = root / "child.marshal"
        self._code_path.write_bytes(marshal.dumps(compile(child_source(), "<sandbox>", "exec")))
        site_dirs = site_package_dirs()
        kept, excluded = split_site_packages(site_dirs)
        self._read_paths = read_paths(kept)
        self._broad_read_paths = broad_read_paths(site_dirs)
        self._hidden_paths = sorted(str(p) for p in excluded)
        self._import_paths = site_dirs
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()

    def command(self, config: dict) -> list[str]:
        flags = ["-S", "-s", "-B", "-X", "utf8"] + (["-P"] if sys.version_info >= (3, 11) else [])
        loader = "import marshal,sys;exec(marshal.loads(open(sys.argv[1],'rb').read()))"
        return [sys.executable, *flags, "-c", loader, str(self._code_path), marshal.dumps(config).hex()]

    @staticmethod
    def environment(workdir: str) -> dict[str, str]:
        return {"PYTHONHASHSEED": "0", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": workdir}

    def new_workdir(self) -> str:
        return tempfile.mkdtemp(dir=self.root)

    def spawn(self, role: str, limits: Limits, pass_fds: tuple[int, ...], extra: dict,
              **popen: Any) -> tuple[subprocess.Popen, str]:
        workdir = self.new_workdir()
        config = self.config(role, limits, workdir, extra)
        process = subprocess.Popen(self.command(config), env=self.environment(workdir), cwd=workdir,
                                   pass_fds=pass_fds, start_new_session=True, **popen)
        return process, workdir

    def config(self, role: str, limits: Limits, workdir: str, extra: dict) -> dict:
        return {"role": role, "import_paths": self._import_paths, **extra,
                "isolation": {**self.per_program(limits, workdir), **self.shared_isolation()}}

    @staticmethod
    def per_program(limits: Limits, workdir: str) -> dict:
        return {"workdir": workdir, "tmpfs_size": limits.tmpfs_size,
                "limits": {"cpu_s": max(1, int(limits.cpu_s + 0.999)), "memory_bytes": limits.memory_bytes,
                           "file_bytes": limits.file_bytes, "open_files": limits.open_files,
                           "processes": limits.processes}}

    def shared_isolation(self) -> dict:
        """The isolation settings every program shares (the zygote holds them once)."""
        return {"read_paths": self._read_paths, "device_paths": DEVICE_PATHS,
                # where the excluded packages cannot be covered by mounts, the import system may
                # still list site-packages while those packages stay unreadable
                "list_paths": self._import_paths,
                "broad_read_paths": self._broad_read_paths, "hidden_paths": self._hidden_paths}

    def candidate(self, limits: Limits, fds: tuple[int, int]) -> "Candidate":
        """Start a program's interpreter holding the two pipe ends `fds` (requests in, answers out)."""
        if self.launcher == "exec":
            process, workdir = self.spawn("candidate", limits, fds, {"fds": list(fds)}, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return Candidate(process.pid, workdir, process=process)
        with self._zygote_lock:
            if self._zygote is None or not self._zygote.alive():
                self._zygote = Zygote(self)
            zygote = self._zygote
        workdir = self.new_workdir()
        pid = zygote.spawn({"isolation": self.per_program(limits, workdir)}, fds)
        return Candidate(pid, workdir, zygote=zygote)

    @property
    def zygote(self) -> "Zygote | None":
        return self._zygote

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.close()


def remove_workdir(workdir: str | None) -> None:
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


class Candidate:
    """A program's process, started either by exec (a Popen) or by the zygote (a pid)."""

    def __init__(self, pid: int, workdir: str, process: subprocess.Popen | None = None,
                 zygote: "Zygote | None" = None) -> None:
        self.pid, self.workdir, self.process, self.zygote = pid, workdir, process, zygote

    def wait(self, timeout: float) -> int | None:
        """The exit status (negative: killed by that signal), or None if still running."""
        if self.process is not None:
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        return self.zygote.exit_status(self.pid, timeout)

    def kill(self) -> None:
        """Kill the program's whole process group."""
        if self.process is not None:
            kill_group(self.process)
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.zygote.forget(self.pid)


_HEADER = struct.Struct(">I")


def _receive_exact(channel: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = channel.recv(min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class Zygote:
    """The launcher process that forks each program's interpreter (see SandboxConfig.launcher)."""

    def __init__(self, launcher: Launcher) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        workdir = launcher.new_workdir()
        config = launcher.config("zygote", launcher.program_limits, workdir, {"socket_fd": theirs.fileno()})
        try:
            self.process = subprocess.Popen(launcher.command(config), env=launcher.environment(workdir), cwd=workdir,
                                            pass_fds=(theirs.fileno(),), start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.lock = threading.Lock()          # one spawn request at a time
        self.changed = threading.Condition()  # guards the tables below
        self.spawned: dict[int, int] = {}     # request id -> pid
        self.statuses: dict[int, int] = {}    # pid -> exit status
        self.next_id = 0
        self.closed = False
        self._read_message()  # the zygote's hello: it is up and in its network namespace
        self.reader = threading.Thread(target=self._read_forever, daemon=True, name="zygote-reader")
        self.reader.start()

    def _read_message(self) -> dict | None:
        header = _receive_exact(self.channel, _HEADER.size)
        if header is None:
            return None
        body = _receive_exact(self.channel, _HEADER.unpack(header)[0])
        return None if body is None else json.loads(body)

    def _read_forever(self) -> None:
        while True:
            try:
                message = self._read_message()
            except OSError:
                message = None
            with self.changed:
                if message is None:
                    self.closed = True
                    self.changed.notify_all()
                    return
                if "exited" in message:
                    self.statuses[message["exited"]] = message["status"]
                else:
                    self.spawned[message["id"]] = message["pid"]
                self.changed.notify_all()

    def alive(self) -> bool:
        return not self.closed and self.process.poll() is None

    def spawn(self, config: dict, fds: tuple[int, int], timeout: float = 30.0) -> int:
        with self.lock:
            request_id = self.next_id
            self.next_id += 1
            payload = json.dumps({"id": request_id, "config": config}).encode()
            socket.send_fds(self.channel, [_HEADER.pack(len(payload)) + payload], list(fds))
        with self.changed:
            if not self.changed.wait_for(lambda: request_id in self.spawned or self.closed, timeout):
                raise RuntimeError("the program launcher did not answer")
            if request_id not in self.spawned:
                raise RuntimeError("the program launcher exited")
            return self.spawned.pop(request_id)

    def exit_status(self, pid: int, timeout: float) -> int | None:
        with self.changed:
            self.changed.wait_for(lambda: pid in self.statuses or self.closed, timeout)
            return self.statuses.get(pid)

    def forget(self, pid: int) -> None:
        with self.changed:
            self.statuses.pop(pid, None)

    def close(self) -> None:
        self.channel.close()
        kill_group(self.process)


class JudgeProcess:
    """One long-lived judge process and the socket the harness talks to it through."""

    MAX_RUNS = 200

    def __init__(self, launcher: Launcher, limits: Limits) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log = open(launcher.root / f"judge-{theirs.fileno()}-{time.monotonic_ns()}.log", "wb")
        try:
            self.process, self.workdir = launcher.spawn(
                "judge", limits, (theirs.fileno(),), {"socket_fd": theirs.fileno()},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        finally:
            theirs.close()
        self.runs = 0
        self.broken = False

    def run(self, spec: dict, fds: tuple[int, int], wall_s: float) -> dict | None:
        """Send one spec with the candidate's pipe ends; the verdict dict, or None on timeout."""
        payload = json.dumps(spec).encode()
        frame = _HEADER.pack(len(payload)) + payload
        self.runs += 1
        try:
            self.channel.settimeout(wall_s)
            socket.send_fds(self.channel, [frame[:65536]], list(fds))
            self.channel.sendall(frame[65536:])
            header = _receive_exact(self.channel, _HEADER.size)
            body = None if header is None else _receive_exact(self.channel, _HEADER.unpack(header)[0])
            if body is None:
                raise OSError("judge closed the connection")
            return json.loads(body)
        except (OSError, ValueError) as exc:
            self.broken = True
            if isinstance(exc, socket.timeout):
                return None
            return {"verdict": "error", "detail": f"judge failed ({exc}); see {self.log.name}"}

    def healthy(self) -> bool:
        return not self.broken and self.runs < self.MAX_RUNS and self.process.poll() is None

    def close(self) -> None:
        self.channel.close()
        kill_group(self.process)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Pipes:
    """Pipe descriptors owned by one run, each closed exactly once (descriptor numbers are reused
    at once by other threads, so a second close could hit someone else's file)."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def new(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open.update((read, write))
        return read, write

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.open):
            self.close(fd)


class PipeReader(threading.Thread):
    """Drains the verdict pipe (at most 1 MiB kept) so a chatty program cannot block on it."""

    LIMIT = 1 << 20

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            if len(self.data) < self.LIMIT:
                self.data += chunk[: self.LIMIT - len(self.data)]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def isolation(self) -> dict:
        first = self.text().split("\n", 1)[0]
        try:
            message = json.loads(first)
        except ValueError:
            return {}
        return message.get("isolation", {}) if isinstance(message, dict) else {}
