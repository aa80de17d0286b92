"""PNG plots for people who look rather than read (matplotlib, Agg backend), written beside the run's
reports (reports/plots/, versioned with them and listed as DVC plots): the loss curve, detector score
histograms with their thresholds, candidate vs champion confusion matrices, and a PCA of the batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from poisongate.config import Config
from poisongate.schema import row_ids, to_arrays
from poisongate.sources import workspace_reference
from poisongate.tables import read_table
from poisongate.workspace import Workspace, atomic_path


def loss_curve(curve: pd.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["epoch"], curve["loss"], label="training loss")
    ax.set(xlabel="epoch", ylabel="loss (mean over steps)", yscale="log", title="Candidate training")
    ax.legend()
    return fig


def score_histograms(histograms: dict[str, dict[str, list[float]]], thresholds: dict[str, float]) -> Figure:
    """One panel per detector: the batch's scores (poisoning_gate.histogram's bins) and the calibrated threshold past
    which rows are quarantined."""
    fig, axes = plt.subplots(1, len(histograms), figsize=(5 * len(histograms), 4), squeeze=False)
    for ax, (name, h) in zip(axes[0], histograms.items()):
        ax.stairs(h["counts"], h["edges"], fill=True, color="tab:blue")
        ax.axvline(thresholds[name], color="tab:red", linestyle="--", label=f"threshold {thresholds[name]:.3g}")
        ax.set(title=name, xlabel="score", ylabel="rows")
        ax.legend()
    return fig


def confusion_pair(candidate: list[list[int]], champion: list[list[int]] | None, classes: list[Any]) -> Figure:
    """Holdout confusion matrices side by side, rows = true class, on one colour scale."""
    mats = [("candidate", np.asarray(candidate))] + (
        [("champion", np.asarray(champion))] if champion is not None else [])
    fig, axes = plt.subplots(1, len(mats), figsize=(5 * len(mats), 4.5), squeeze=False)
    vmax = max(m.max() for _, m in mats)
    for ax, (name, m) in zip(axes[0], mats):
        ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax)
        ticks = range(len(classes))
        ax.set(title=f"{name} (holdout)", xlabel="predicted", ylabel="true", xticks=ticks, yticks=ticks,
               xticklabels=classes, yticklabels=classes)
        for (i, j), n in np.ndenumerate(m):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if n > vmax / 2 else "black")
    return fig


def batch_projection(X_ref: np.ndarray, X: np.ndarray, quarantined: np.ndarray) -> Figure:
    """The batch in the first two principal components of the trusted reference, quarantined rows marked."""
    pca = PCA(n_components=2).fit(X_ref)
    Z = pca.transform(X)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(*Z[~quarantined].T, s=8, alpha=0.6, label=f"accepted ({int((~quarantined).sum())})")
    ax.scatter(*Z[quarantined].T, s=30, marker="x", color="tab:red", label=f"quarantined ({int(quarantined.sum())})")
    ax.set(xlabel="PC 1 of the reference", ylabel="PC 2", title="Incoming batch")
    ax.legend()
    return fig


def save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def write(ws: Workspace, summaries: dict[str, Any], config: Config) -> list[Path]:
    """Every plot this run has the data for; a stage that did not run has no plot."""
    out = ws.path("reports", "plots")
    written = []
    if "train" in summaries and ws.path("reports", "train_curve.csv").exists():
        written.append(save(loss_curve(pd.read_csv(ws.path("reports", "train_curve.csv"))), out / "loss_curve.png"))
    promote = summaries.get("promote")
    if promote:
        classes = list(promote["candidate"]["class_recall"])
        champion = (promote["champion"] or {}).get("confusion")
        written.append(save(confusion_pair(promote["candidate"]["confusion"], champion, classes),
                            out / "confusion.png"))
    filt = summaries.get("filter")
    if filt:
        (reference, schema), batch = workspace_reference(ws, config.data), read_table(ws.incoming)
        quarantined_ids = {r["id"] for r in filt["quarantined_rows"]}
        mask = np.isin(row_ids(batch, schema), list(quarantined_ids))
        written.append(save(batch_projection(to_arrays(reference, schema)[0], to_arrays(batch, schema)[0], mask),
                            out / "batch_pca.png"))
        histograms = {k: h for k, h in filt.get("score_histograms", {}).items() if h["counts"]}
        if histograms:
            written.append(save(score_histograms(histograms, filt["thresholds"]), out / "detector_scores.png"))
    return written
