"""Stage `train`: the candidate, trained on data/clean.parquet and checkpointed to models/candidate (Orbax).
Training checkpoints go to models/training every train.checkpoint_every epochs (a killed run resumes); their
weights are saved with the candidate as its trajectory (the audit's TracIn reads it), then they are removed."""
from __future__ import annotations

import csv
import json
import shutil
import time
from typing import Any

import jax
import numpy as np

from poisongate.config import Config, TrainConfig
from poisongate.learning import models
from poisongate.learning.training import NonFiniteTraining, Trained, accuracy, loss_spikes, privacy_spent, train_model
from poisongate.sources import workspace_reference
from poisongate.workspace import Workspace, atomic_path, atomic_write_text


def summarize(t: Trained, Xs: np.ndarray, y: np.ndarray, cfg: TrainConfig, seconds: float) -> dict[str, Any]:
    monitor, dp_on = cfg.monitor, cfg.dp_sgd.enabled
    return {
        "rows": len(Xs),
        "epochs": cfg.epochs,
        "devices": jax.device_count(),
        "final_loss": float(t.losses[-1].mean()),
        "train_accuracy": accuracy(t.graphdef, t.params, Xs, y),
        "nonfinite": False,
        "loss_spikes": loss_spikes(t.losses.ravel(), monitor.spike_window, monitor.spike_zscore,
                                   monitor.spike_min_scale),
        "max_grad_norm": float(t.grad_norms.max()),
        "dp_epsilon": privacy_spent(cfg, len(Xs)) if dp_on else None,
        "dp_delta": cfg.dp_sgd.delta if dp_on else None,
        "seconds": seconds,
        "samples_per_second": len(Xs) * cfg.epochs / seconds,
    }


def write_curves(ws: Workspace, t: Trained) -> None:
    """DVC plots: reports/train_curve.csv per step (loss, gradient norm, batch accuracy) and
    reports/train_accuracy.csv per epoch."""
    steps = t.losses.shape[1]
    with atomic_path(ws.path("reports", "train_curve.csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "loss", "grad_norm", "accuracy"])
        for i, (l, g, a) in enumerate(zip(t.losses.ravel(), t.grad_norms.ravel(), t.accuracies.ravel())):
            writer.writerow([i, i // steps, f"{l:.6f}", f"{g:.6f}", f"{a:.6f}"])
    with atomic_path(ws.path("reports", "train_accuracy.csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "accuracy"])
        for epoch, (l, a) in enumerate(zip(t.losses.mean(axis=1), t.accuracies.mean(axis=1))):
            writer.writerow([epoch, f"{l:.6f}", f"{a:.6f}"])


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    cfg = config.train
    _, schema = workspace_reference(ws, config.data)
    Xs, y, spec = models.scaled_rows(ws.clean, schema, cfg)
    checkpoint_dir = ws.path("models", "training")
    start = time.perf_counter()
    try:
        t = train_model(Xs, y, spec, cfg, checkpoint_dir=checkpoint_dir, checkpoint_every=cfg.checkpoint_every)
    except NonFiniteTraining:
        report = {"rows": len(Xs), "nonfinite": True, "loss_spikes": []}
        atomic_write_text(ws.report("train"), json.dumps(report) + "\n")
        raise
    seconds = time.perf_counter() - start
    models.save(ws.candidate, cfg.epochs, t.params, t.opt_state, spec, t.trajectory)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    write_curves(ws, t)
    return summarize(t, Xs, y, cfg, seconds)
