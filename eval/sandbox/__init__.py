"""Isolated execution of untrusted programs (see `tuner_eval.sandbox.runner` for the design and limits)."""

from tuner_eval.sandbox.runner import (
    ERROR,
    FAIL,
    PASS,
    SKIPPED,
    TIMEOUT,
    VERDICTS,
    Limits,
    Sandbox,
    SandboxConfig,
    Verdict,
)

__all__ = ["ERROR", "FAIL", "PASS", "SKIPPED", "TIMEOUT", "VERDICTS", "Limits", "Sandbox", "SandboxConfig",
           "Verdict"]
