"""Isolated execution of untrusted programs (see `tuner_eval.sandbox.runner` for the design and limits).

Harness side, by role: `policy` (verdicts, limits, what programs may read), `processes` (starting
sandboxed interpreters and talking to them), `runner` (`Sandbox`: judged, reference and single
runs). Inside the sandboxed interpreters: `codec`, `isolation`, `wire`, `candidate`, `judge`,
`launcher` (sent there as source).
"""

from tuner_eval.sandbox.policy import (ERROR, FAIL, PASS, SKIPPED, TIMEOUT, VERDICTS, Limits, SandboxConfig,
                                       Verdict)
from tuner_eval.sandbox.runner import Sandbox

__all__ = ["ERROR", "FAIL", "PASS", "SKIPPED", "TIMEOUT", "VERDICTS", "Limits", "Sandbox", "SandboxConfig",
           "Verdict"]
