"""The red team over nights: each attack spread over N nights at rate r per night, through the loop's own steps
in memory (the data gate and the poisoning gate on each night, accumulation of the accepted rows, the
cross-night campaign checks, training and the promotion gate against the previous night's champion), beside the
same loop without an attack. Reported per campaign: the night it was first caught and by what, the poisoned rows
that reached the training set, and the final champion's accuracy vs the clean loop's."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from poisongate import attacks, campaign, promotion
from poisongate.config import Config
from poisongate.learning import crossval
from poisongate.redteam import MatrixData, fit_model, gates, train_config
from poisongate.schema import to_arrays


def nightly_batches(batch: pd.DataFrame, nights: int, seed: int) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(batch))
    return [batch.iloc[np.sort(part)].reset_index(drop=True) for part in np.array_split(order, nights)]


def run_campaign(data: MatrixData, config: Config, attack: str, rate: float, nights: int,
                 seed: int) -> dict[str, Any]:
    """One campaign (attack "none": the clean loop). Stops at the night it is first caught."""
    cfg, schema = train_config(config, seed), data.schema
    X_ref, y_ref = to_arrays(data.reference, schema)
    X_hold, y_hold = to_arrays(data.holdout, schema)
    detectors = campaign.row_level(config.filter.detectors)
    baseline = fit_model(X_ref, y_ref, schema.classes, cfg).predict(X_hold)
    champion, accepted, runs, flagged, screened = baseline, [], [], {n: [] for n in detectors}, []
    night_rows: list[dict[str, Any]] = []
    caught = None
    for k, batch in enumerate(nightly_batches(data.batch, nights, seed)):
        sim = config.simulate.model_copy(update={"attack": attack, "rate": rate, "seed": seed * 1000 + k})
        frame, truth = attacks.poison(batch, schema, sim) if attack != "none" else (batch, np.zeros(len(batch), bool))
        quarantined, _, refused, screening = gates(data, frame, config)
        row = {"night": k + 1, "rows": len(frame), "poisoned": int(truth.sum()),
               "poisoned_accepted": int((truth & ~quarantined).sum()), "refused": refused}
        if refused:
            caught = caught or (k + 1, refused)
            night_rows.append({**row, "poisoned_accepted": 0, "promoted": False})
            break
        tonight = frame.loc[~quarantined].assign(_poisoned=truth[~quarantined], _night=k)
        candidate_rows = pd.concat([*accepted, tonight], ignore_index=True)
        runs_now = [*runs, k]
        for name in detectors:
            flagged[name].append(int(screening.flags[name].sum()) if name in screening.flags else -1)
        screened.append(len(frame))
        X_u, y_u = to_arrays(candidate_rows, schema)
        nights_seen = campaign.Nights(runs_now, X_u, y_u, candidate_rows["_night"].map(
            {r: i for i, r in enumerate(runs_now)}).to_numpy(), {n: np.asarray(v) for n, v in flagged.items()},
            np.asarray(screened))
        trusted = campaign.Trusted(X_ref, y_ref, len(schema.classes), screening.trusted_exceeding)
        verdict = campaign.judge(trusted, nights_seen, config.campaign, config.filter)
        if verdict["fired"]:
            caught = (k + 1, "campaign: " + ", ".join(verdict["fired"]))
            night_rows.append({**row, "promoted": False, "campaign": verdict["fired"],
                               "nights_named": [int(n) + 1 for n in verdict["involved"]]})
            break
        X_train, y_train = np.concatenate([X_ref, X_u]), np.concatenate([y_ref, y_u])
        model = fit_model(X_train, y_train, schema.classes, cfg)
        folds, _ = crossval.cross_validate(X_train, y_train, model.spec, cfg, config.crossval.folds)
        decision = promotion.decide(y_hold, schema.classes, model.predict(X_hold), champion, baseline,
                                    crossval.summary(folds, len(X_train)), config.promote)
        row["promoted"] = decision["passed"]
        if decision["passed"]:  # the training set grows only by a promoted night
            champion, accepted, runs = model.predict(X_hold), [*accepted, tonight], runs_now
        else:
            for name in detectors:
                flagged[name].pop()
            screened.pop()
        night_rows.append(row)
    in_set = pd.concat(accepted, ignore_index=True) if accepted else pd.DataFrame({"_poisoned": []})
    return {
        "attack": attack, "rate": rate, "nights": nights, "seed": seed,
        "caught_night": caught[0] if caught else None, "caught_by": caught[1] if caught else None,
        "poisoned_in_training_set": int(in_set["_poisoned"].sum()),
        "untrusted_rows": len(in_set),
        "poisoned_share": float(in_set["_poisoned"].mean()) if len(in_set) else 0.0,
        "final_champion_accuracy": float((champion == y_hold).mean()),
        "per_night": night_rows,
    }


def markdown(result: dict[str, Any]) -> str:
    clean = result["clean"]
    lines = ["# poisongate red team over nights", "",
             f"Clean loop: {clean['nights']} nights, caught: {clean['caught_night'] or 'never'} (a false alarm if "
             f"caught), final champion accuracy {clean['final_champion_accuracy']:.3f}.", "",
             "| attack | rate/night | first caught (night) | by | poisoned rows in the training set | share | "
             "final champion | clean loop |", "|---|---|---|---|---|---|---|---|"]
    for c in result["campaigns"]:
        lines.append(f"| {c['attack']} | {c['rate']:.0%} | {c['caught_night'] or 'never'} | {c['caught_by'] or '-'} "
                     f"| {c['poisoned_in_training_set']} of {c['untrusted_rows']} | {c['poisoned_share']:.1%} | "
                     f"{c['final_champion_accuracy']:.3f} | {c['clean_loop_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"
