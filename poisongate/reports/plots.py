"""PNG plots for people who look rather than read (matplotlib, Agg backend), written beside the run's
reports (reports/plots/, versioned with them and listed as DVC plots): the loss curve, detector score
histograms with their thresholds, candidate vs champion confusion matrices, a PCA and a t-SNE of the batch, and
the audit's influence histogram with its threshold."""
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
from sklearn.manifold import TSNE

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


PROJECTION_POINTS = 20_000  # points drawn per kind in the PCA view: a seeded sample beyond this (the counts are all)


def batch_projection(X_ref: np.ndarray, X: np.ndarray, quarantined: np.ndarray, seed: int = 0) -> Figure:
    """The batch in the first two principal components of the trusted reference, quarantined rows marked (at most
    PROJECTION_POINTS of each drawn, a seeded sample: a million points cost seconds and show no more)."""
    pca = PCA(n_components=2).fit(X_ref)
    rng = np.random.default_rng(seed)
    accepted, flagged = np.flatnonzero(~quarantined), np.flatnonzero(quarantined)
    shown = [np.sort(rng.choice(rows, PROJECTION_POINTS, replace=False)) if len(rows) > PROJECTION_POINTS else rows
             for rows in (accepted, flagged)]
    Z = pca.transform(X[np.concatenate(shown)]) if len(X) else np.zeros((0, 2))
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(*Z[: len(shown[0])].T, s=8, alpha=0.6, label=f"accepted ({len(accepted)})")
    ax.scatter(*Z[len(shown[0]):].T, s=30, marker="x", color="tab:red", label=f"quarantined ({len(flagged)})")
    ax.set(xlabel="PC 1 of the reference", ylabel="PC 2", title="Incoming batch")
    ax.legend()
    return fig


# 250 early-exaggeration iterations and 250 more: half of scikit-learn's default, half the time (2,000 rows: 10 s
# of a 10k night's record step). Trustworthiness (10 neighbours) 0.9809 vs 0.9819 on 2,000 synthetic rows,
# 0.9927 vs 0.9928 on 1,500 digits.
TSNE_ITERATIONS = 500


def tsne_view(X_ref: np.ndarray, X: np.ndarray, quarantined: np.ndarray, influential: np.ndarray, max_rows: int,
              seed: int = 0) -> Figure:
    """Reference + batch in one t-SNE embedding (a seeded sample of the reference when there are more than
    `max_rows` rows; every batch row up to that), quarantined and high-influence rows marked."""
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(X))[:max_rows])
    ref = np.sort(rng.permutation(len(X_ref))[:max(max_rows - len(keep), 0)])
    # n_jobs: the gradient on every core, the same embedding (each point's gradient is computed on its own)
    Z = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(ref) + len(keep) - 1) / 3),
             max_iter=TSNE_ITERATIONS, n_jobs=-1).fit_transform(
        np.concatenate([X_ref[ref], X[keep]]).astype(np.float64))
    Zr, Zb = Z[: len(ref)], Z[len(ref):]
    q, h = quarantined[keep], influential[keep]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(*Zr.T, s=6, alpha=0.35, color="tab:gray", label=f"trusted reference ({len(ref)})")
    ax.scatter(*Zb[~q & ~h].T, s=8, alpha=0.7, color="tab:blue", label=f"accepted ({int((~q & ~h).sum())})")
    ax.scatter(*Zb[q].T, s=30, marker="x", color="tab:red", label=f"quarantined by the gates ({int(q.sum())})")
    ax.scatter(*Zb[h].T, s=40, marker="^", facecolors="none", edgecolors="tab:orange",
               label=f"high influence, audit ({int(h.sum())})")
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title="Reference + incoming batch (t-SNE)")
    ax.legend(fontsize=7)
    return fig


def influence_histogram(histograms: dict[str, dict[str, list[float]]], threshold: float) -> Figure:
    """Tonight's rows' and the trusted rows' TracIn harm, and the audit's threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, h), color in zip(histograms.items(), ("tab:blue", "tab:gray")):
        if h["counts"]:
            counts = np.asarray(h["counts"], np.float64)
            ax.stairs(counts / max(counts.sum(), 1), h["edges"], label=f"{name} rows", color=color)
    if np.isfinite(threshold):
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="harm to the holdout loss (TracIn)", ylabel="share of rows", yscale="log", title="Audit: influence")
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
        reference, schema = workspace_reference(ws, config.data)
        batch = read_table(ws.incoming, columns=schema.columns)
        mask = pd.read_parquet(ws.scores, columns=["quarantined"])["quarantined"].to_numpy()  # in the batch's order
        X_ref, X = to_arrays(reference, schema)[0], to_arrays(batch, schema)[0]
        written.append(save(batch_projection(X_ref, X, mask), out / "batch_pca.png"))
        audit = summaries.get("audit") or {}
        influential = np.isin(row_ids(batch, schema), [r["id"] for r in audit.get("flagged_rows", [])])
        written.append(save(tsne_view(X_ref, X, mask, influential, config.audit.tsne_rows), out / "batch_tsne.png"))
        histograms = {k: h for k, h in filt.get("score_histograms", {}).items() if h["counts"]}
        if histograms:
            written.append(save(score_histograms(histograms, filt["thresholds"]), out / "detector_scores.png"))
    audit = summaries.get("audit") or {}
    if audit.get("influence_histograms"):
        written.append(save(influence_histogram(audit["influence_histograms"], audit["threshold"]),
                            out / "influence.png"))
    return written
