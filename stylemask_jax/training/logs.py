"""Readable training logs: JSON lines, TensorBoard event files (when tensorboardX is installed)."""

from __future__ import annotations

import json
import math
import os
import time


class MetricWriter:
    """Writes `{step, time, **metrics}` lines to WORKDIR/metrics.jsonl and scalars to TensorBoard.

    Only process 0 of a multi-host run should create one (the loop takes care of that).
    """

    def __init__(self, workdir: str, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional extra: `pip install stylemask-jax[logging]`
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict, prefix: str = "") -> None:
        values = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": round(time.time(), 3), **values}) + "\n")
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, value, int(step))

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def non_finite(metrics: dict) -> list[str]:
    """Names of metrics that are NaN or Inf."""
    return [k for k, v in metrics.items() if not math.isfinite(float(v))]


def format_metrics(metrics: dict, keys=("loss",)) -> str:
    return " ".join(f"{k}={float(metrics[k]):.4g}" for k in keys if k in metrics)
