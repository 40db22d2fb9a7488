"""The `diagnostics:` section of a `tuner train` recipe (the gradient-health monitor's switches).

Kept free of heavy imports: tuner.recipes.args imports it to build the recipe schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.config import ConfigError


@dataclass
class DiagnosticsArgs:
    grad_monitor_every_n_steps: int | None = None
    """Measure per-layer gradient, weight and update norms every N optimizer steps (null: off).
    Results: output_dir/grad_health.jsonl, grad_health.json and the heat map grad_health.png."""
    grad_monitor_update_norms: bool = True
    """Also measure update norms |w_after - w_before|. Costs one copy of this rank's trainable
    fp32 weight partition, held only during monitored steps."""
    grad_monitor_explode_factor: float = 10.0
    """Alarm `exploding` when a layer's gradient norm exceeds this multiple of the median of its
    own recent history."""
    grad_monitor_collapse_factor: float = 100.0
    """Alarm `vanishing` when a layer's gradient norm falls below its recent median divided by this."""
    grad_monitor_depth_ratio: float = 20.0
    """Alarm `exploding`/`vanishing` when, on a log-linear fit over the decoder layers, the first
    layer's gradient norm is more than this multiple (less than this fraction) of the last's
    (median over the last 5 monitored steps)."""
    grad_monitor_history: int = 20
    """How many past monitored steps form a layer's history (its median is the reference)."""
    grad_monitor_halt_on_nonfinite: bool = False
    """Stop training with an error naming the step and parameters when a gradient or weight is
    NaN/Inf (before the next checkpoint is written)."""

    def __post_init__(self) -> None:
        n = self.grad_monitor_every_n_steps
        if n is not None and n < 1:
            raise ConfigError(f"diagnostics.grad_monitor_every_n_steps: must be positive or null, got {n}")
        for name in ("grad_monitor_explode_factor", "grad_monitor_collapse_factor", "grad_monitor_depth_ratio"):
            if not getattr(self, name) > 1:
                raise ConfigError(f"diagnostics.{name}: must be greater than 1, got {getattr(self, name)}")
        if self.grad_monitor_history < 1:
            raise ConfigError(f"diagnostics.grad_monitor_history: must be at least 1, got {self.grad_monitor_history}")

    @property
    def grad_monitor_enabled(self) -> bool:
        return self.grad_monitor_every_n_steps is not None
