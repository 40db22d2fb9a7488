"""Gradient-health monitor: per-layer and per-module-type gradient, weight and update norms.

Inside `tuner train` (recipe switch `diagnostics.grad_monitor_every_n_steps: N`) the recipe calls
`on_gradients(step)` between the last `engine.backward()` of an optimizer step and the
`engine.step()` that applies it (the only window in which DeepSpeed holds the reduced gradients),
then `on_step_end(step)` after it, and `close()` at the end of the run.

Cost on a monitored step: one pass over this rank's gradient and weight fragments (see
fragments.py), a copy of the weight fragments when update norms are on, and ONE all-reduce of a
float64 vector of 5 numbers per trainable parameter tensor. Nothing is gathered: under ZeRO-3
every rank reads only its own partitions. Other steps cost nothing.

Writes (rank 0) into the run's output_dir:
    grad_health.jsonl  one line per monitored step: global, per-layer and per-module-type norms,
                       ratios to the weight norms, and the alarms raised at that step
    grad_health.json   the summary: alarm episodes and per-layer statistics over the run
    grad_health.png    heat map of log10 per-layer gradient norms over steps, alarms marked
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from tuner.diagnostics.config import DiagnosticsArgs
from tuner.diagnostics.fragments import FragmentReader
from tuner.diagnostics.grad_alarms import (NONFINITE, Alarm, AlarmRules, AlarmState, GradientHealthError, layer_key,
                                          module_type)
from tuner.diagnostics.grad_report import JSONL_NAME, write_report

logger = logging.getLogger("tuner.diagnostics")

_FIELDS = 5  # grad^2, weight^2, update^2, non-finite gradient, non-finite weight


def encode(value: float) -> float | str:
    """JSON has no NaN/Inf: write them as the strings float() reads back."""
    return value if math.isfinite(value) else str(value)


def decode(value: float | str | None) -> float:
    return float("nan") if value is None else float(value)


def _norm_row(grad_sq: float, weight_sq: float, update_sq: float | None) -> dict:
    """Norms and ratios of one group from its summed squares (NaN stays NaN, written as "nan")."""
    grad, weight = math.sqrt(grad_sq) if grad_sq >= 0 else float("nan"), math.sqrt(weight_sq)
    row = {"grad_norm": grad, "weight_norm": weight, "grad_to_weight": grad / weight if weight > 0 else float("inf")}
    if update_sq is not None:
        update = math.sqrt(update_sq)
        row.update(update_norm=update, update_to_weight=update / weight if weight > 0 else float("inf"))
    return {k: encode(v) for k, v in row.items()}


class GradientHealthMonitor:
    """Measures gradient health every N optimizer steps; see the module docstring.

    Args:
        model: the DeepSpeed engine (or a plain torch module) being trained.
        args: the recipe's `diagnostics` section.
        output_dir: where the run writes its results (rank 0 writes).
        rank, world_size: this process's data-parallel position.
        resume_step: the step training resumes from; later lines of an old jsonl are dropped and
            the earlier ones become the layers' history again.
    """

    def __init__(self, model: object, args: DiagnosticsArgs, output_dir: str | Path, *, rank: int = 0,
                 world_size: int = 1, resume_step: int = 0):
        if args.grad_monitor_every_n_steps is None:
            raise ValueError("diagnostics.grad_monitor_every_n_steps is null: the monitor is off")
        self.args = args
        self.every = args.grad_monitor_every_n_steps
        self.reader = FragmentReader(model, rank)
        self.rank, self.world_size = rank, world_size
        self.names = self.reader.names
        self.layers = [layer_key(n) for n in self.names]
        self.types = [module_type(n) for n in self.names]
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / JSONL_NAME
        self.alarms = AlarmState(AlarmRules(args.grad_monitor_explode_factor, args.grad_monitor_collapse_factor,
                                            args.grad_monitor_depth_ratio, args.grad_monitor_history),
                                 self.names)
        self._pending: tuple[int, torch.Tensor, list] | None = None
        self._active: set[tuple[str, str, str]] = set()
        self._file = self._open(resume_step) if rank == 0 else None

    def _open(self, resume_step: int):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                if record["step"] <= resume_step:
                    kept.append(line)
                    self.alarms.remember({k: decode(v["grad_norm"]) for k, v in record["layers"].items()})
        self.path.write_text("".join(k + "\n" for k in kept))
        return self.path.open("a")

    def due(self, step: int) -> bool:
        return step % self.every == 0

    @torch.no_grad()
    def on_gradients(self, step: int) -> None:
        """Read gradient and weight fragments; call after the step's last backward, before engine.step()."""
        if not self.due(step):
            return
        stats = torch.zeros(_FIELDS, len(self.names), dtype=torch.float64)
        scale = self.reader.gradient_scale()
        for i, grad in enumerate(self.reader.gradients()):
            if grad is not None:
                stats[0, i], stats[3, i] = _square_norm(grad, scale)
        snapshot = []
        for i, weight in enumerate(self.reader.weights()):
            if weight is not None:
                stats[1, i], stats[4, i] = _square_norm(weight, 1.0)
            keep = self.args.grad_monitor_update_norms and weight is not None
            snapshot.append(weight.detach().float().clone() if keep else None)
        self._pending = (step, stats, snapshot)

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """Measure the update, combine all ranks' numbers with one all-reduce, record and raise alarms."""
        if self._pending is None or self._pending[0] != step:
            return
        _, stats, snapshot = self._pending
        self._pending = None
        if self.args.grad_monitor_update_norms:
            for i, (before, weight) in enumerate(zip(snapshot, self.reader.weights())):
                if before is not None and weight is not None:
                    stats[2, i] = _square_norm(before.sub_(weight.float()), 1.0)[0]
        if self.world_size > 1 and torch.distributed.is_initialized():
            from tuner.engine import device

            reduced = stats.to(device())
            torch.distributed.all_reduce(reduced)
            stats = reduced.cpu()
        nonfinite = bool(stats[3].any() or stats[4].any())
        alarms = self._record(step, stats) if self.rank == 0 else []
        if nonfinite and self.args.grad_monitor_halt_on_nonfinite:
            first = next((a for a in alarms if a.kind == NONFINITE), None)
            self.close()
            what = first.message if first else f"step {step}: non-finite gradients or weights (see rank 0)"
            raise GradientHealthError(f"{what}; training stopped because diagnostics.grad_monitor_halt_on_nonfinite "
                                      "is true (checkpoints already written are intact)")

    def _record(self, step: int, stats: torch.Tensor) -> list[Alarm]:
        grad_sq = [v if not (b or math.isnan(v)) else float("nan") for v, b in zip(stats[0].tolist(), stats[3].tolist())]
        weight_sq = [v if not b else float("nan") for v, b in zip(stats[1].tolist(), stats[4].tolist())]
        update_sq = stats[2].tolist()
        with_updates = self.args.grad_monitor_update_norms

        def grouped(keys: list[str]) -> dict:
            sums: dict[str, list[float]] = {}
            for key, *values in zip(keys, grad_sq, weight_sq, update_sq):
                sums[key] = [a + b for a, b in zip(sums.get(key, [0.0, 0.0, 0.0]), values)]
            return {key: _norm_row(g, w, u if with_updates else None) for key, (g, w, u) in sums.items()}

        layers = grouped(self.layers)
        param_grads = [math.sqrt(v) if v >= 0 else v for v in grad_sq]
        param_weights = [math.sqrt(v) if v >= 0 else v for v in weight_sq]
        alarms = self.alarms.check(step, {k: decode(v["grad_norm"]) for k, v in layers.items()},
                                   param_grads, param_weights)
        line = {"step": step, "global": _norm_row(sum(grad_sq), sum(weight_sq), sum(update_sq) if with_updates else None),
                "layers": layers, "module_types": grouped(self.types), "alarms": [a.to_dict() for a in alarms]}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        active = set()
        for alarm in alarms:
            ident = (alarm.kind, alarm.reason, alarm.where)
            active.add(ident)
            if ident not in self._active:
                logger.warning("gradient health: %s (%s): %s", alarm.kind, alarm.reason, alarm.message)
        self._active = active
        return alarms

    def close(self) -> dict[str, Path] | None:
        """Write the summary JSON and the heat map (rank 0); returns their paths there."""
        if self._file is None:
            return None
        self._file.close()
        self._file = None
        return write_report(self.path, self.output_dir, every_n_steps=self.every, layout=self.reader.layout,
                            world_size=self.world_size)


def _square_norm(tensor: torch.Tensor, scale: float) -> tuple[float, float]:
    """(squared L2 norm / scale^2, 1.0 if the tensor holds NaN/Inf else 0.0)."""
    norm = float(torch.linalg.vector_norm(tensor, dtype=torch.float32))
    if not math.isfinite(norm):  # NaN/Inf inside, or only the float32 sum of squares overflowed
        if not bool(torch.isfinite(tensor).all()):
            return float("nan"), 1.0
        norm = float(torch.linalg.vector_norm(tensor, dtype=torch.float64))
    return (norm / scale) ** 2, 0.0
