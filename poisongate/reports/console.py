"""What a run shows on the console: one line per stage (stage, verdict, its key figure, seconds). Lines go to the
`poisongate.console` logger, which the CLI prints plainly; the flow also logs them to Prefect (its UI, `--verbose`)."""
from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("poisongate.console")
STAGE_WIDTH = 12


def figure(name: str, s: dict[str, Any]) -> str:
    """A stage's key figure from its summary (KeyError: a summary without it)."""
    if name == "reference":
        return f"{s['reference_rows']} reference rows, {s['holdout_rows']} holdout rows"
    if name == "expectations":
        return f"{s['expectations']} expectations" + (" (rebuilt)" if s.get("rebuilt") else "")
    if name == "ingest":
        return f"{s.get('rows', 0)} rows" + (f", simulated {s['attack']} at {s['rate']:g}" if s.get("rate") else "")
    if name == "validate":
        return f"{len(s.get('failed', []))} of {s.get('evaluated', 0)} expectations failed"
    if name == "filter":
        tests = ", ".join(f"{k} p={t['p_value']:.2g}" for k, t in s.get("batch_tests", {}).items())
        return f"{s['quarantined']} of {s['rows']} rows quarantined" + (f"; {tests}" if tests else "")
    if name == "campaign":
        nights = s.get("nights", 0)
        return f"{nights} night{'' if nights == 1 else 's'}, {s.get('untrusted_rows', 0)} untrusted rows checked"
    if name == "train":
        return f"{s['rows']} rows, {s['epochs']} epochs, final loss {s['final_loss']:.4g}"
    if name == "audit":
        if not s.get("enabled", True):
            return "off (audit.enabled)"
        retrained = "; candidate retrained without them" if s.get("retrained") else ""
        return (f"{s['flagged']} of {s['rows_judged']} accepted rows flagged by influence "
                f"(threshold {s['threshold']:.3g}){retrained}")
    if name == "crossval":
        return f"mean accuracy {s['mean_accuracy']:.4f} over {s['folds']} folds (spread {s['spread']:.4f})"
    if name == "promote":
        return f"holdout accuracy {s['candidate']['accuracy']:.4f}"
    if name == "record":
        return f"git commit {s['commit'][:10]}"
    return ""


def describe(name: str, summary: dict[str, Any]) -> str:
    """The key figure, and a refusal's reason; a summary of another version without the figure still says why."""
    try:
        shown = figure(name, summary)
    except (KeyError, TypeError):
        shown = ""
    if summary.get("passed") is False and summary.get("reason"):
        shown = f"{shown}: {summary['reason']}" if shown else str(summary["reason"])
    return shown


def stage_line(name: str, summary: dict[str, Any]) -> str:
    """`filter       pass    3 of 150 rows quarantined    21.4 s`; a refusal shows its reason."""
    verdict = {True: "pass", False: "REFUSED", None: "done"}[summary.get("passed")]
    return f"{name:<{STAGE_WIDTH}} {verdict:<8} {describe(name, summary)}  ({summary.get('seconds', 0):.1f} s)"


def printable(text: str) -> str:
    """Control characters (a file name carrying terminal escapes) shown as escapes, not obeyed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def show(line: str) -> None:
    LOGGER.info(printable(line))
