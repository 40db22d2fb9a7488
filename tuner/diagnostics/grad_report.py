"""The gradient-health summary (JSON) and heat map (PNG), built from grad_health.jsonl.

Used at the end of a monitored run and by `tuner diagnose grad-health RUN_DIR`, which can also
render a run that is still going or that was killed.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from tuner.diagnostics.grad_alarms import layer_index, layer_key

JSONL_NAME = "grad_health.jsonl"
SUMMARY_NAME = "grad_health.json"
HEATMAP_NAME = "grad_health.png"


def read_jsonl(path: str | Path) -> list[dict]:
    """The monitored steps; a clear error names the file and line of a broken record."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["step"], row["layers"]  # noqa: B018 (the two keys every record has)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a grad_health record ({exc})") from None
        rows.append(row)
    return rows


def _value(row: dict, section: str, key: str, field: str) -> float:
    entry = row.get(section, {}).get(key, {})
    value = entry.get(field)
    return float("nan") if value is None else float(value)


def _stats(values: list[float]) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    out = {"first": values[0] if values else None, "last": values[-1] if values else None,
           "non_finite_steps": len(values) - len(finite)}
    if finite:
        out.update(median=statistics.median(finite), min=min(finite), max=max(finite))
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in out.items()}


def alarm_episodes(rows: list[dict]) -> list[dict]:
    """Alarms merged over consecutive monitored steps: one entry per (kind, reason, where) episode."""
    episodes: list[dict] = []
    open_: dict[tuple, dict] = {}
    for row in rows:
        seen = set()
        for alarm in row.get("alarms", []):
            ident = (alarm["kind"], alarm["reason"], alarm["where"])
            seen.add(ident)
            if ident in open_:
                open_[ident]["last_step"] = row["step"]
                open_[ident]["steps"] += 1
            else:
                open_[ident] = {"kind": alarm["kind"], "reason": alarm["reason"], "where": alarm["where"],
                                "first_step": row["step"], "last_step": row["step"], "steps": 1,
                                "message": alarm["message"], "params": alarm.get("params", [])}
                episodes.append(open_[ident])
        for ident in [i for i in open_ if i not in seen]:
            del open_[ident]
    return episodes


def layer_order(rows: list[dict]) -> list[str]:
    """Layer keys as first seen (model order), decoder layers sorted by index."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["layers"] if k not in keys]
    decoder = sorted((k for k in keys if layer_index(k) is not None), key=layer_index)
    it = iter(decoder)
    return [next(it) if layer_index(k) is not None else k for k in keys]


def summarise(rows: list[dict], **context) -> dict:
    layers = layer_order(rows)
    types: list[str] = []
    for row in rows:
        types += [k for k in row.get("module_types", {}) if k not in types]

    def section(name: str, keys: list[str]) -> dict:
        out = {}
        for key in keys:
            out[key] = {"grad_norm": _stats([_value(r, name, key, "grad_norm") for r in rows]),
                        "grad_to_weight": _stats([_value(r, name, key, "grad_to_weight") for r in rows])}
            if rows and "update_norm" in rows[0].get(name, {}).get(key, {}):
                out[key]["update_to_weight"] = _stats([_value(r, name, key, "update_to_weight") for r in rows])
        return out

    episodes = alarm_episodes(rows)
    return {**context, "steps_monitored": len(rows), "first_step": rows[0]["step"] if rows else None,
            "last_step": rows[-1]["step"] if rows else None, "healthy": not episodes, "alarms": episodes,
            "layers": section("layers", layers), "module_types": section("module_types", types)}


def plot_heatmap(rows: list[dict], out_path: str | Path, title: str = "per-layer gradient norm") -> Path:
    """log10 gradient norm per layer (rows, input side at the top) and monitored step (columns).

    Non-finite cells are drawn black; alarms are marked (x exploding, o vanishing, * non-finite).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = layer_order(rows)
    steps = [r["step"] for r in rows]
    grid = np.full((len(layers), len(steps)), np.nan)
    for j, row in enumerate(rows):
        for i, key in enumerate(layers):
            value = _value(row, "layers", key, "grad_norm")
            grid[i, j] = math.log10(value) if math.isfinite(value) and value > 0 else (-np.inf if value == 0 else np.nan)
    finite = grid[np.isfinite(grid)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="black")
    shown = np.where(np.isneginf(grid), low, grid)
    fig, ax = plt.subplots(figsize=(min(14, 4 + 0.15 * len(steps)), 1.5 + 0.3 * len(layers)))
    image = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, vmin=low, vmax=max(high, low + 1e-6),
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log10 gradient norm")
    ticks = list(range(0, len(steps), max(1, len(steps) // 12)))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks])
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("optimizer step")
    markers = {"exploding": "x", "vanishing": "o", "nonfinite": "*"}
    for j, row in enumerate(rows):
        for alarm in row.get("alarms", []):
            where = alarm["where"] if alarm["where"] in layers else layer_key(alarm["where"])
            if where in layers:
                ax.scatter([j], [layers.index(where)], marker=markers.get(alarm["kind"], "s"), color="red", s=40)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def write_report(jsonl: str | Path, out_dir: str | Path, **context) -> dict[str, Path]:
    """grad_health.json and grad_health.png in `out_dir` from the records in `jsonl`; returns their paths."""
    rows = read_jsonl(jsonl)
    out_dir = Path(out_dir)
    summary_path = out_dir / SUMMARY_NAME
    summary_path.write_text(json.dumps(summarise(rows, **context), indent=2))
    paths = {"jsonl": Path(jsonl), "summary": summary_path}
    if rows:
        paths["heatmap"] = plot_heatmap(rows, out_dir / HEATMAP_NAME)
    return paths
