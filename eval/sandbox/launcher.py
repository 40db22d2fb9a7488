"""Inside sandboxed interpreters: the zygote (program launcher) and single roles, and `main`, which
dispatches on the role in the config. Sent as source into the sandbox.

zygote     The program launcher: forks a pristine copy of itself for each candidate.
single     For test programs that must share an interpreter with the program (DS-1000's plot
           checks, only when explicitly allowed: see `tuner_eval.sandbox.runner`): runs the whole
           test program and, only if it finishes without an exception, writes a per-run secret
           nonce (received on stdin before the program) to the verdict pipe.
"""

import os
import struct
import sys

try:  # imported as a module (tests, tools); in the sandbox these names come first in the source
    from tuner_eval.sandbox.candidate import run_candidate
    from tuner_eval.sandbox.isolation import enter_network_namespace, lock_down
    from tuner_eval.sandbox.judge import run_judge, run_reference
    from tuner_eval.sandbox.wire import _describe, _prepare, _silence_stdio
except ImportError:
    pass


def run_single(config):
    import json

    _prepare(config)
    data = json.loads(sys.stdin.buffer.read())
    verdict_fd = config["verdict_fd"]
    report = lock_down(config["isolation"])
    os.write(verdict_fd, (json.dumps({"isolation": report}) + "\n").encode())
    nonce, program = data.pop("nonce"), data.pop("program")
    del data
    _silence_stdio()
    module = type(sys)("__main__")
    try:
        exec(compile(program, "<program>", "exec"), module.__dict__)
    except BaseException as exc:
        os.write(verdict_fd, ("fail " + _describe(exc)).encode())
        os._exit(1)
    os.write(verdict_fd, (nonce + " pass").encode())
    os._exit(0)


def run_zygote(config):
    """Fork a pristine interpreter for each program (the "zygote" launcher).

    This process is itself a fresh interpreter started by the harness with the fixed minimal
    environment; it never runs a program. It enters an empty network namespace once, then, for
    each request (a candidate config plus the candidate's two pipe ends as SCM_RIGHTS), forks a
    child that closes everything else, applies its own isolation layers and becomes a candidate.
    It reaps its children and reports their exit statuses.
    """
    import json
    import select
    import signal
    import socket

    _prepare(config)
    channel = socket.socket(fileno=config["socket_fd"])
    network, _ = enter_network_namespace()
    header = struct.Struct(">I")

    def send(message):
        payload = json.dumps(message).encode()
        channel.sendall(header.pack(len(payload)) + payload)

    send({})  # hello: the harness waits for it before sending requests
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    import _pickle  # noqa: F401  (loaded once here instead of in every child that needs it)

    while True:
        ready, _, _ = select.select([channel, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})
        if channel not in ready:
            continue
        try:
            body, fds, _, _ = socket.recv_fds(channel, 1 << 20, 2)
        except OSError:
            os._exit(0)
        if not body:
            os._exit(0)
        (size,) = header.unpack(body[:header.size])
        body = bytearray(body[header.size:])
        while len(body) < size:
            chunk = channel.recv(size - len(body))
            if not chunk:
                os._exit(0)
            body += chunk
        request = json.loads(bytes(body))
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                candidate = {"role": "candidate", "import_paths": config["import_paths"],
                             "isolation": {**config["isolation"], **request["config"]["isolation"]}}
                _become_candidate(candidate, fds, network)
            finally:
                os._exit(70)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        send({"id": request["id"], "pid": pid})


def _become_candidate(config, fds, network):
    """In a freshly forked child of the zygote: keep only the candidate's pipes, then run."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    keep = set(fds) | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    config["fds"] = list(fds)
    config["isolation"]["inherited_network"] = network
    os.chdir(config["isolation"]["workdir"])
    run_candidate(config)


def main():
    import marshal

    config = marshal.loads(bytes.fromhex(sys.argv[-1]))  # marshal: no json/re import at start-up
    {"candidate": run_candidate, "judge": run_judge, "reference": run_reference,
     "single": run_single, "zygote": run_zygote}[config["role"]](config)
