"""The red-team matrix: every attack x rate x seed through the pipeline with the gates on and with them off.

One cell runs, in memory and not as a DVC flow, the library functions the stages call: the checked trusted
data (sources.load_trusted), the attack (attacks.poison, the code path of `run --simulate`), the GX data gate
(data_gate) and the poisoning gate (poisoning_gate) with their refusal rules, training (learning.training),
the cross-validation summary (learning.crossval) and the promotion rule (promotion.decide). Gates off = train on the
reference plus the whole poisoned batch. Per seed, two baselines: the champion (trained on the trusted reference
alone: what serves before this batch arrives) and the clean model (reference + the unpoisoned batch, no gates).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from poisongate import attacks, audit, data_gate, output_monitor, promotion
from poisongate import poisoning_gate as gate
from poisongate.config import Config, RedteamConfig, Targets, TrainConfig, ValidateConfig
from poisongate.errors import PoisongateError
from poisongate.learning import crossval, models, training
from poisongate.schema import Schema, image_side, to_arrays
from poisongate.sources import DIGITS, load_digits_frame, load_source_batch, load_trusted, split_default
from poisongate.workspace import Workspace, atomic_path, atomic_write_text

_GX_LOCK = threading.Lock()  # cells run in threads; one GX context is shared and not thread-safe


@dataclass(frozen=True)
class MatrixData:
    reference: pd.DataFrame
    holdout: pd.DataFrame
    batch: pd.DataFrame
    schema: Schema
    validation: ValidateConfig
    min_rows: int
    user_expectations: list[dict[str, Any]]

    def suite(self, rows: int) -> dict[str, Any]:
        """The GX suite for a batch of `rows` rows, derived from the reference as the `expectations` stage does."""
        return data_gate.merge(data_gate.build_suite(self.reference, self.schema, self.validation, self.min_rows,
                                                     rows), self.user_expectations)


@dataclass(frozen=True)
class Model:
    graphdef: Any
    weights: Any
    spec: dict[str, Any]
    trajectory: tuple = ()  # (epoch, weights) every train.checkpoint_every epochs: what the audit reads

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = widen(X, self.spec["n_features"])
        return training.model_proba(self.graphdef, self.weights, self.spec, X).argmax(axis=1)


def load_data(ws: Workspace, config: Config) -> MatrixData:
    """The trusted reference, golden holdout and incoming batch of params.yaml's `data` section, in memory. With
    the embedded default and no data.batch, the batch is every incoming row (all nightly batches together)."""
    reference, holdout, schema = load_trusted(ws, config.data)
    if config.data.source == DIGITS and config.data.batch is None:
        batch = pd.concat(split_default(load_digits_frame(), config.data.split)[2], ignore_index=True)
    else:
        batch = load_source_batch(ws, config.data)[0]
    return MatrixData(reference[schema.columns], holdout, batch, schema, config.validation, config.data.min_rows,
                      data_gate.user_expectations(ws.user_expectations))


def widen(X: np.ndarray, width: int) -> np.ndarray:
    """Zero-fill the columns an attack added (irrelevant features) on rows that do not carry them."""
    return np.pad(X, ((0, 0), (0, width - X.shape[1]))) if X.shape[1] < width else X


def fit_model(X: np.ndarray, y: np.ndarray, classes: tuple, recipe: TrainConfig, trajectory: bool = False) -> Model:
    spec = models.model_spec(recipe, X, classes)
    t = training.train_model(models.scale(X, spec), y, spec, recipe,
                             checkpoint_every=recipe.checkpoint_every if trajectory else None)
    return Model(t.graphdef, t.params, spec, t.trajectory)


def evaluate(model: Model, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return promotion.evaluate(model.graphdef, model.weights, model.spec, widen(X, model.spec["n_features"]), y)


def train_config(config: Config, seed: int) -> TrainConfig:
    epochs = config.redteam.epochs or config.train.epochs
    return config.train.model_copy(update={"seed": config.train.seed + seed, "epochs": epochs})


def success_rate(model: Model, data: MatrixData, config: Config) -> float | None:
    """Backdoor attack success rate on triggered clean holdout rows; None where rows are not square images."""
    X, y = to_arrays(data.holdout, data.schema)
    try:
        return attacks.attack_success_rate(model.predict, X, y, **config.simulate.options.get("backdoor", {}))
    except PoisongateError:
        return None


MODEL = "champion_model"


def recorded(base: dict[str, Any]) -> dict[str, Any]:
    """A baseline as redteam.json keeps it: its figures, not its model."""
    return {k: v for k, v in base.items() if k != MODEL}


def baseline(data: MatrixData, config: Config, seed: int) -> dict[str, Any]:
    """The champion (reference alone) and the clean model (reference + unpoisoned batch, no gates)."""
    cfg = train_config(config, seed)
    X_ref, y_ref = to_arrays(data.reference, data.schema)
    X, y = to_arrays(data.batch, data.schema)
    X_hold, y_hold = to_arrays(data.holdout, data.schema)
    champion = fit_model(X_ref, y_ref, data.schema.classes, cfg)
    clean = fit_model(np.concatenate([X_ref, X]), np.concatenate([y_ref, y]), data.schema.classes, cfg)
    return {
        "seed": seed,
        "champion": evaluate(champion, X_hold, y_hold),
        "champion_predictions": champion.predict(X_hold).tolist(),  # the baseline of the promotion gate too
        "clean_accuracy": evaluate(clean, X_hold, y_hold)["accuracy"],
        "clean_asr": success_rate(clean, data, config),
        "champion_asr": success_rate(champion, data, config),
        MODEL: champion,  # the output monitor's serving model (not written to redteam.json)
    }


def gates(data: MatrixData, frame: pd.DataFrame, config: Config,
          scorer: gate.ChunkScorer = gate.score_in_process
          ) -> tuple[np.ndarray, np.ndarray, str | None, gate.Screening]:
    """The data gate and the poisoning gate on a batch, with the run's refusal rules: (quarantined rows, rows
    the detectors flagged, why the whole batch was refused or None, prefixed by the gate, the screening). The
    detectors' flags are kept even when a gate refuses the whole batch, so the matrix also measures the
    row-level gate alone."""
    X_ref, y_ref = to_arrays(data.reference, data.schema)
    screening = gate.screen(X_ref, y_ref, *to_arrays(frame, data.schema), config.filter, scorer)
    flagged = screening.quarantined
    with _GX_LOCK:
        checked = data_gate.validate_frame(frame, data.suite(len(frame)))
    everything = np.ones(len(frame), bool)
    if data_gate.refusal(checked):  # named by the kinds of expectation that failed, as the matrix groups them
        return (everything, flagged, "data gate: " + ", ".join(sorted({f["expectation"] for f in checked["failed"]})),
                screening)
    refused = gate.refusal(screening, config.filter)
    if refused:
        return everything, flagged, f"poisoning gate: {refused}", screening
    return flagged, flagged, None, screening


def detection(truth: np.ndarray, caught: np.ndarray, prefix: str = "") -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(truth, caught, average="binary", zero_division=0)
    return {f"{prefix}precision": float(precision), f"{prefix}recall": float(recall), f"{prefix}f1": float(f1)}


def run_cell(data: MatrixData, config: Config, attack: str, rate: float, seed: int,
             base: dict[str, Any], scorer: gate.ChunkScorer = gate.score_in_process) -> dict[str, Any]:
    """One attack at one rate and seed: accuracy without and with the gates, detection, ASR, promotion."""
    sim = config.simulate.model_copy(update={"attack": attack, "rate": rate, "seed": seed})
    frame, truth = attacks.poison(data.batch, data.schema, sim)
    cfg = train_config(config, seed)
    classes = data.schema.classes
    X_ref, y_ref = to_arrays(data.reference, data.schema)
    X_hold, y_hold = to_arrays(data.holdout, data.schema)
    added = [c for c in frame.columns if c not in data.batch.columns]  # irrelevant features, if any
    X = frame[list(data.schema.features) + added].to_numpy(np.float32)
    _, y = to_arrays(frame, data.schema)

    ungated = fit_model(np.concatenate([widen(X_ref, X.shape[1]), X]), np.concatenate([y_ref, y]), classes, cfg)
    quarantined, flagged, refused, _ = gates(data, frame, config, scorer)
    cell = {
        "attack": attack, "rate": rate, "seed": seed, "poisoned_rows": int(truth.sum()), "batch_rows": len(truth),
        "clean_accuracy": base["clean_accuracy"], "champion_accuracy": base["champion"]["accuracy"],
        "accuracy_without_gates": evaluate(ungated, X_hold, y_hold)["accuracy"],
        "quarantined": int(quarantined.sum()), "batch_refused": refused,
        **detection(truth, quarantined), **detection(truth, flagged, "detector_"),
    }
    if refused:  # the flow stops: no candidate, the champion keeps serving
        gated, cell["promoted"], cell["promotion"] = None, False, f"not reached ({refused})"
        cell["accuracy_with_gates"] = base["champion"]["accuracy"]
    else:
        keep = ~quarantined
        X_clean, y_clean = np.concatenate([X_ref, X[keep, : X_ref.shape[1]]]), np.concatenate([y_ref, y[keep]])
        gated = fit_model(X_clean, y_clean, classes, cfg, trajectory=config.audit.enabled)
        if config.audit.enabled:
            gated = audit_cell(cell, gated, data, config, X_clean, y_clean, truth, keep, len(X_ref))
        folds, _ = crossval.cross_validate(X_clean, y_clean, gated.spec, cfg, config.crossval.folds)
        candidate = evaluate(gated, X_hold, y_hold)
        reference_model = np.asarray(base["champion_predictions"])  # the champion is the reference-only model
        accepted = X[keep, : X_ref.shape[1]]
        pulls = output_monitor.pull_checks(y[keep], gated.predict(accepted), base[MODEL].predict(accepted), y_hold,
                                           gated.predict(X_hold), reference_model, list(classes),
                                           config.audit.pull_alpha) if config.audit.enabled else []
        cell["target_class_pull"] = next((c["check"] for c in pulls if c["passed"] is False), None)
        decision = promotion.decide(y_hold, classes, gated.predict(X_hold), reference_model, reference_model,
                                    crossval.summary(folds, len(X_clean)), config.promote, extra=pulls)
        cell.update(accuracy_with_gates=candidate["accuracy"], promoted=decision["passed"],
                    promotion=decision["reason"])
    cell["served_accuracy"] = cell["accuracy_with_gates"] if cell["promoted"] else cell["champion_accuracy"]
    # a promoted model may be worse than the champion by chance, within promote's practical margin (and not
    # significantly): worse than that is a miss
    cell["promotion_margin"] = config.promote.max_accuracy_drop or 0.0
    if attack == "backdoor":
        cell["asr_clean"] = base["clean_asr"]
        cell["asr_without_gates"] = success_rate(ungated, data, config)
        cell["asr_with_gates"] = base["champion_asr"] if gated is None else success_rate(gated, data, config)
    return cell


def audit_cell(cell: dict[str, Any], gated: Model, data: MatrixData, config: Config, X_clean: np.ndarray,
               y_clean: np.ndarray, truth: np.ndarray, accepted: np.ndarray, n_trusted: int) -> Model:
    """What the post-training audit adds to the gates: the poisoned rows it flags among those the gates accepted,
    and accuracy / ASR before and after its retrain. Returns the model the audit leaves (the flow's models/audited).
    """
    X_hold, y_hold = to_arrays(data.holdout, data.schema)
    trusted = np.arange(len(X_clean)) < n_trusted
    *_, judgement = audit.audit_rows(gated.graphdef, gated.trajectory, gated.spec, X_clean, y_clean, trusted,
                                     ~trusted, X_hold, y_hold, config.train.learning_rate, config.audit)
    flagged = np.zeros(len(truth), bool)
    flagged[np.flatnonzero(accepted)[judgement.flagged]] = True
    poisoned_accepted = truth & accepted
    cell.update(audit_flagged=int(flagged.sum()), audit_caught=int((flagged & truth).sum()),
                poisoned_accepted=int(poisoned_accepted.sum()),
                **detection(poisoned_accepted[accepted], flagged[accepted], "audit_"),
                accuracy_before_audit=evaluate(gated, X_hold, y_hold)["accuracy"])
    if cell["attack"] == "backdoor":
        cell["asr_before_audit"] = success_rate(gated, data, config)
    if not judgement.flagged.any():
        return gated
    keep = np.ones(len(X_clean), bool)
    keep[np.flatnonzero(~trusted)[judgement.flagged]] = False
    return fit_model(X_clean[keep], y_clean[keep], data.schema.classes, train_config(config, cell["seed"]))


def attack_names(cfg: RedteamConfig, n_features: int) -> list[str]:
    """redteam.attacks (checked when params.yaml is parsed); `all` leaves the backdoor out where rows are not
    square images (it needs them)."""
    if cfg.attacks == "all":
        return [n for n in sorted(attacks.ATTACKS) if n != "backdoor" or image_side(n_features)]
    return list(cfg.attacks)


def describe(config: Config, data: MatrixData, names: list[str], seeds: list[int], seconds: float) -> dict[str, Any]:
    """What ran, where and when: recorded with every matrix."""
    cfg = config.redteam
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}",
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "data": config.data.source, "batch_rows": len(data.batch),
        "attacks": names, "rates": list(cfg.rates), "seeds": seeds,
        "epochs": train_config(config, 0).epochs, "workers": cfg.workers, "seconds": round(seconds, 1),
    }


# ---- summary, targets and outputs ------------------------------------------------------------------------------

MEANS = ("clean_accuracy", "accuracy_without_gates", "accuracy_with_gates", "served_accuracy", "champion_accuracy",
         "precision", "recall", "f1", "detector_precision", "detector_recall", "asr_clean", "asr_without_gates",
         "asr_with_gates", "accuracy_before_audit", "asr_before_audit", "audit_precision", "audit_recall")
SUMS = ("poisoned_accepted", "audit_caught", "audit_flagged")


def summarize(cells: list[dict[str, Any]], targets: Targets) -> list[dict[str, Any]]:
    """One row per attack x rate: means over seeds, promotions, and the issue's targets met or missed (and why)."""
    rows = []
    for (attack, rate), group in pd.DataFrame(cells).groupby(["attack", "rate"], sort=False):
        row = {"attack": attack, "rate": float(rate), "seeds": len(group)}
        row |= {k: float(group[k].mean()) for k in MEANS if k in group and group[k].notna().any()}
        row |= {k: int(group[k].sum()) for k in SUMS if k in group and group[k].notna().any()}
        row["promoted"] = int(group["promoted"].sum())
        row["refused"] = int(group["batch_refused"].notna().sum())
        row["refused_by"] = sorted(group["batch_refused"].dropna().unique().tolist())
        row["worst_seed_drop"] = float((group["clean_accuracy"] - group["accuracy_with_gates"]).max())
        row["worse_promoted"] = int((group["promoted"] & (group["accuracy_with_gates"] < group["champion_accuracy"]
                                                          - group["promotion_margin"])).sum())
        row["target"], row["why"] = check_targets(row, targets)
        rows.append(row)
    return rows


def check_targets(row: dict[str, Any], targets: Targets) -> tuple[str, str]:
    """'met' or 'missed', and what the figures say about a miss. The promotion target holds for every row."""
    misses = []
    if row["worse_promoted"]:
        misses.append(f"{row['worse_promoted']} seed(s) promoted a model worse than the champion beyond the margin")
    drop = row["clean_accuracy"] - row["accuracy_with_gates"]
    bound = {float(r): float(b) for r, b in targets.max_accuracy_drop.items()}.get(row["rate"])
    if bound is not None and drop > bound:
        misses.append(f"gated accuracy {drop * 100:.1f} points below clean (bound {bound * 100:.0f}); " + (
            f"batch refused in {row['refused']} seed(s), the champion has {row['champion_accuracy']:.3f}"
            if row["refused"] else f"detection recall {row['recall']:.2f}, precision {row['precision']:.2f}"))
    if row.get("asr_with_gates") is not None:
        if row["asr_with_gates"] > targets.max_backdoor_asr:
            misses.append(f"ASR with gates {row['asr_with_gates']:.2f} > {targets.max_backdoor_asr} "
                          f"(recall {row['recall']:.2f})")
        if drop > targets.max_backdoor_clean_cost:
            misses.append(f"clean-accuracy cost {drop * 100:.1f} points > {targets.max_backdoor_clean_cost * 100:.0f}")
    return ("missed", "; ".join(misses)) if misses else ("met", "")


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:.1f}"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# poisongate red-team matrix", "", *(f"- {k}: {v}" for k, v in meta.items()), "",
             "Accuracy on the golden holdout (%), mean over seeds. *clean*: no attack, no gates; *champion*: trusted "
             "reference alone; *served*: the candidate if promoted, else the champion. P/R/F1: the quarantine vs the "
             "poisoned rows (a refused batch is quarantined whole); detector P/R: the poisoning gate's row flags "
             "alone. Worst drop: the largest clean - gates gap over seeds (points). Refused: batches refused whole, "
             "by: D = the data gate (GX), F = the poisoning gate (too many rows flagged). ASR: backdoor attack "
             "success rate on triggered clean holdout rows. *gates*: after the post-training audit's retrain; *before "
             "audit*: the gated model the audit judged; *audit caught*: poisoned rows the audit flagged of those the "
             "gates accepted (summed over seeds).", "",
             "| attack | rate | clean | no gates | before audit | gates | worst drop | served | champion | promoted | "
             "refused | P | R | F1 | detector P | detector R | audit caught | ASR no gates | ASR before audit | "
             "ASR gates | target | why |", "|" + "---|" * 22]
    for r in rows:
        by = "".join(sorted({"D" if reason.startswith("data gate") else "F" for reason in r["refused_by"]}))
        lines.append(
            f"| {r['attack']} | {r['rate']:.0%} | {_pct(r['clean_accuracy'])} | {_pct(r['accuracy_without_gates'])} | "
            f"{_pct(r.get('accuracy_before_audit'))} | {_pct(r['accuracy_with_gates'])} | "
            f"{r['worst_seed_drop'] * 100:.1f} | {_pct(r['served_accuracy'])} | "
            f"{_pct(r['champion_accuracy'])} | {r['promoted']}/{r['seeds']} | {r['refused']}/{r['seeds']} {by} | "
            f"{r['precision']:.2f} | {r['recall']:.2f} | {r['f1']:.2f} | {r['detector_precision']:.2f} | "
            f"{r['detector_recall']:.2f} | {r.get('audit_caught', 0)}/{r.get('poisoned_accepted', 0)} | "
            f"{_pct(r.get('asr_without_gates'))} | {_pct(r.get('asr_before_audit'))} | "
            f"{_pct(r.get('asr_with_gates'))} | "
            f"{r['target']} | {r['why']} |")
    return "\n".join(lines) + "\n"


def heatmap(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy drop vs clean (points), without and with the gates: attacks down, rates across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(rows)
    drops = {title: frame.assign(drop=100 * (frame["clean_accuracy"] - frame[column]))
             .pivot(index="attack", columns="rate", values="drop")
             for column, title in (("accuracy_without_gates", "gates off"), ("accuracy_with_gates", "gates on"))}
    vmin = min(0.0, *(float(np.nanmin(d.to_numpy())) for d in drops.values()))  # one colour scale for both
    vmax = max(10.0, *(float(np.nanmax(d.to_numpy())) for d in drops.values()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * frame["attack"].nunique() + 2), constrained_layout=True)
    for ax, (title, drop) in zip(axes, drops.items()):
        image = ax.imshow(drop.to_numpy(), cmap="Reds", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(drop.columns)), [f"{r:.0%}" for r in drop.columns])
        ax.set_yticks(range(len(drop.index)), drop.index)
        for (i, j), v in np.ndenumerate(drop.to_numpy()):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{title}: accuracy drop vs clean (points)")
        ax.set_xlabel("poisoned share")
    fig.colorbar(image, ax=axes, shrink=0.8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_outputs(out: Path, result: dict[str, Any]) -> dict[str, str]:
    """redteam.json (every cell and the summary), redteam.md and redteam.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"redteam.{kind}" for kind in ("json", "md", "png")}
    atomic_write_text(paths["json"], json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(paths["md"], markdown(result["summary"], result["meta"]))
    heatmap(result["summary"], paths["png"])
    return {kind: str(p) for kind, p in paths.items()}


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain Python values for a Prefect table artifact (it rejects numpy scalars)."""
    keep = ("attack", "rate", "clean_accuracy", "accuracy_without_gates", "accuracy_with_gates", "promoted",
            "refused", "precision", "recall", "f1", "asr_with_gates", "target")
    return [{k: (round(float(r[k]), 4) if isinstance(r.get(k), float) else r.get(k)) for k in keep} for r in rows]
