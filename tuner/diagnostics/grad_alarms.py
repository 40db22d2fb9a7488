"""Gradient-health alarms: pure functions of the norms the monitor measured, step by step.

Kinds (after the survey of vanishing and exploding gradients, which frames both as gradient
magnitudes changing geometrically with depth, and the common practice of watching each layer
against its own recent past):

- `nonfinite`: a gradient or weight holds NaN/Inf; names the step and the parameters.
- `exploding`, reason `history`: a layer's gradient norm exceeds `explode_factor` x the median of
  its own last `history` monitored values.
- `vanishing`, reason `history`: a layer's gradient norm falls below that median / `collapse_factor`.
- `exploding` / `vanishing`, reason `depth`: on a least-squares fit of log(gradient norm) against
  layer index, the first decoder layer's norm is more than `depth_ratio` times (less than
  1/`depth_ratio` of) the last's: gradients grow (shrink) geometrically on the way back to the
  input. The spread over the whole depth is what matters, whatever the number of layers; it is
  the median over the last few monitored steps, so one noisy step neither raises nor clears the
  alarm. This fires from the first step, before any history exists (a bad initialisation).
- `vanishing`, reason `zero`: a trainable parameter's gradient has been zero (below 1e-12 of its
  weight norm) for `zero_patience` or more monitored steps in a row: a dead or saturated unit, or a
  parameter cut off from the loss. A single zero step is normal (LoRA's A and LLaMA-Adapter's
  prompts have zero gradients until their zero-initialised partners move).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from dataclasses import asdict, dataclass, field


class GradientHealthError(RuntimeError):
    """Training stopped by `diagnostics.grad_monitor_halt_on_nonfinite`."""

NONFINITE = "nonfinite"
EXPLODING = "exploding"
VANISHING = "vanishing"

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_WRAPPERS = ("base_model.model.", "model.", "transformer.")
_ADAPTER_NAMES = {"default"}
ZERO_RELATIVE = 1e-12


def layer_key(name: str) -> str:
    """`layers.<i>` for a decoder layer's parameter, else the top-level module (`embed_tokens`)."""
    match = _LAYER.search(name)
    if match:
        return f"layers.{int(match.group(1))}"
    for prefix in _WRAPPERS:
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name.split(".", 1)[0]


def module_type(name: str) -> str:
    """The module path inside its layer (`self_attn.q_proj`, `mlp.down_proj.lora_A`), shared by all layers."""
    match = _LAYER.search(name)
    path = name[match.end():] if match else name
    if not match:
        for prefix in _WRAPPERS:
            while path.startswith(prefix):
                path = path[len(prefix):]
    parts = [p for p in path.split(".")[:-1] if p not in _ADAPTER_NAMES]
    return ".".join(parts) or path


def layer_index(key: str) -> int | None:
    return int(key.split(".", 1)[1]) if key.startswith("layers.") else None


@dataclass
class AlarmRules:
    explode_factor: float = 10.0
    collapse_factor: float = 100.0
    depth_ratio: float = 20.0
    depth_window: int = 5
    history: int = 20
    min_history: int = 1
    zero_patience: int = 3


@dataclass
class Alarm:
    step: int
    kind: str
    """nonfinite, exploding or vanishing."""
    where: str
    """A layer key (`layers.3`) or a parameter name."""
    reason: str
    """history, depth, zero, gradient (non-finite gradient) or weight (non-finite weight)."""
    message: str
    params: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def depth_growth(layer_norms: dict[str, float]) -> float | None:
    """Per-layer factor by which gradient norms grow from the last decoder layer back to the first.

    exp(-slope) of a least-squares line through log(norm) against layer index; None when fewer
    than three decoder layers have a finite, positive norm.
    """
    points = [(layer_index(k), math.log(v)) for k, v in layer_norms.items()
              if layer_index(k) is not None and math.isfinite(v) and v > 0]
    if len(points) < 3:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return math.exp(-slope)


class AlarmState:
    """Per-layer histories and per-parameter zero streaks; `check` returns this step's alarms."""

    def __init__(self, rules: AlarmRules, param_names: list[str]):
        self.rules = rules
        self.param_names = param_names
        self.history: dict[str, deque] = {}
        self.zero_streak = [0] * len(param_names)
        self.spreads: deque = deque(maxlen=rules.depth_window)

    def remember(self, layer_norms: dict[str, float]) -> None:
        for key, value in layer_norms.items():
            if math.isfinite(value):
                self.history.setdefault(key, deque(maxlen=self.rules.history)).append(value)

    def check(self, step: int, layer_norms: dict[str, float], param_grad_norms: list[float],
              param_weight_norms: list[float]) -> list[Alarm]:
        """Alarms of this step; then this step's norms join the histories."""
        alarms = self._nonfinite(step, param_grad_norms, param_weight_norms)
        alarms += self._history(step, layer_norms)
        alarms += self._depth(step, layer_norms)
        alarms += self._zero(step, param_grad_norms, param_weight_norms)
        self.remember(layer_norms)
        return alarms

    def _nonfinite(self, step: int, grads: list[float], weights: list[float]) -> list[Alarm]:
        alarms = []
        for reason, values in (("weight", weights), ("gradient", grads)):
            bad = [n for n, v in zip(self.param_names, values) if not math.isfinite(v)]
            if bad:
                more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
                alarms.append(Alarm(step, NONFINITE, bad[0], reason,
                                    f"step {step}: non-finite {reason} in {bad[0]}{more}", bad))
        return alarms

    def _history(self, step: int, layer_norms: dict[str, float]) -> list[Alarm]:
        alarms = []
        for key, value in layer_norms.items():
            past = self.history.get(key)
            if not past or len(past) < self.rules.min_history or not math.isfinite(value):
                continue
            median = statistics.median(past)
            if median > 0 and value > self.rules.explode_factor * median:
                alarms.append(Alarm(step, EXPLODING, key, "history",
                                    f"step {step}: {key} gradient norm {value:.3g} is {value / median:.3g}x "
                                    f"its recent median {median:.3g}"))
            elif median > 0 and value < median / self.rules.collapse_factor:
                alarms.append(Alarm(step, VANISHING, key, "history",
                                    f"step {step}: {key} gradient norm {value:.3g} collapsed to "
                                    f"{value / median:.3g}x its recent median {median:.3g}"))
        return alarms

    def _depth(self, step: int, layer_norms: dict[str, float]) -> list[Alarm]:
        growth = depth_growth(layer_norms)
        if growth is None:
            return []
        layers = sorted((k for k in layer_norms if layer_index(k) is not None), key=layer_index)
        first, last = layers[0], layers[-1]
        self.spreads.append(growth ** (layer_index(last) - layer_index(first)))
        spread = statistics.median(self.spreads)
        detail = (f"{spread:.3g}x from {last} back to {first} (median of the last {len(self.spreads)} monitored "
                  f"steps; now {layer_norms[first]:.3g} vs {layer_norms[last]:.3g})")
        if spread > self.rules.depth_ratio:
            return [Alarm(step, EXPLODING, first, "depth", f"step {step}: gradient norms grow {detail}")]
        if spread < 1 / self.rules.depth_ratio:
            return [Alarm(step, VANISHING, first, "depth", f"step {step}: gradient norms shrink {detail}")]
        return []

    def _zero(self, step: int, grads: list[float], weights: list[float]) -> list[Alarm]:
        dead: list[str] = []
        longest = 0
        for i, (g, w) in enumerate(zip(grads, weights)):
            zero = math.isfinite(g) and g <= ZERO_RELATIVE * (w if math.isfinite(w) else 0.0)
            self.zero_streak[i] = self.zero_streak[i] + 1 if zero else 0
            if self.zero_streak[i] >= self.rules.zero_patience:
                dead.append(self.param_names[i])
                longest = max(longest, self.zero_streak[i])
        if not dead:
            return []
        more = f" and {len(dead) - 1} more" if len(dead) > 1 else ""
        return [Alarm(step, VANISHING, dead[0], "zero",
                      f"step {step}: zero gradient for up to {longest} monitored steps in a row in {dead[0]}{more}",
                      dead)]
