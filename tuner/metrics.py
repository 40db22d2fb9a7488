"""Training metrics: metrics.jsonl, tensorboard events and a loss-curve PNG (rank 0 only)."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLogger:
    """Appends one JSON line per logged step; on resume, drops lines past the resumed step so
    every step appears once, with the values of the run that actually produced the model."""

    def __init__(self, output_dir: str | Path, resume_step: int = 0, tensorboard: bool = True):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / "metrics.jsonl"
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= resume_step:
                    kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept))
        self._file = self.path.open("a")
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=resume_step + 1)
            except ImportError:  # tensorboard is a core dependency; keep training if it is broken
                self._writer = None

    def log(self, step: int, values: dict) -> None:
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_loss(metrics_path: str | Path, out_path: str | Path, title: str = "training loss") -> Path:
    """Loss (and learning rate, on a second axis) against optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in rows], label="loss", color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over response tokens)")
    ax.set_title(title)
    if rows and "lr" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r["lr"] for r in rows], color="tab:orange", alpha=0.6, label="lr")
        ax2.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
