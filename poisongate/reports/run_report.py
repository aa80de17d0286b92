"""The run report: JSON for machines, markdown for people (also published as a Prefect artifact)."""
from __future__ import annotations

import json
from typing import Any

from poisongate import for_git
from poisongate.reports import cell, md
from poisongate.workspace import Workspace, atomic_write_text


def detection(summaries: dict[str, Any], quarantined_ids: list[Any]) -> dict[str, Any] | None:
    """Precision/recall of the quarantine against a simulated attack's ground truth."""
    poisoned = set(summaries.get("ingest", {}).get("poisoned_ids", []))
    if not poisoned:
        return None
    caught = poisoned & set(quarantined_ids)
    return {
        "poisoned": len(poisoned),
        "quarantined": len(quarantined_ids),
        "precision": len(caught) / max(len(quarantined_ids), 1),
        "recall": len(caught) / len(poisoned),
    }


def build(run_id: str, summaries: dict[str, Any], verdict: str, dvc_hashes: dict[str, str],
          git_base: str, quarantined_ids: list[Any]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "verdict": verdict,
        "git_parent": git_base,
        "stages": summaries,
        "detection": detection(summaries, quarantined_ids),
        "dvc_hashes": dvc_hashes,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["stages"]
    lines = [f"# poisongate run {report['run_id']}", "", f"**Verdict:** {md(report['verdict'])}", ""]
    ingest = s.get("ingest", {})
    lines += [f"Incoming batch: {ingest.get('rows')} rows from {md(ingest.get('source'))}"
              + (f", simulated attack `{ingest['attack']}` at rate {ingest['rate']}" if ingest.get("poisoned_ids")
                 else ""), ""]

    lines += ["## Data gate (Great Expectations)", ""]
    v = s.get("validate")
    if v:
        lines.append(f"{'PASSED' if v['passed'] else 'FAILED'}: {v['evaluated']} expectations evaluated, "
                     f"{len(v['failed'])} failed.")
        lines += [f"- `{f['expectation']}` on {md(f['column'] or 'table')}: observed {md(f['observed'])}"
                  + (f" (error: {md(f['error'])})" if f["error"] else "")
                  for f in v["failed"]]
        if v.get("data_docs"):
            lines.append(f"\nGX Data Docs for this batch: [{v['data_docs']}](../{v['data_docs']})")
    lines.append("")

    f = s.get("filter")
    lines += ["## Poisoning gate (JAX detectors)", ""]
    if f:
        lines.append(f"{'PASSED' if f['passed'] else 'FAILED'}: {f['quarantined']} of {f['rows']} rows quarantined "
                     f"({f['quarantined_share']:.1%}; bound {f['max_quarantine_share']:.0%}).")
        if f.get("fdr") is not None:
            lines.append(f"Rows selected by Benjamini-Hochberg at filter.fdr {f['fdr']:g} on the combined "
                         f"p-values: {f['selected']}.")
        tests = f.get("batch_tests", {})
        if tests:
            lines += ["", "| batch-level detector | statistic | p-value | level | result |", "|---|---|---|---|---|"]
            lines += [f"| {name} | {t['statistic']:.4g} | {t['p_value']:.3g} | {t['alpha']:g} | "
                      f"{'passed' if t['passed'] else 'REFUSED'} |" for name, t in tests.items()]
        selected = f.get("selected_by", {})
        lines += ["", "| detector | threshold at its fpr | rows past it | rows it selected |", "|---|---|---|---|"]
        lines += [f"| {name} | {t:.4g} | {f['flagged_by'][name]} | {selected.get(name, '-')} |"
                  for name, t in f["thresholds"].items() if name not in tests]
        if report["detection"]:
            d = report["detection"]
            lines += ["", f"Against the simulated attack's ground truth: precision {d['precision']:.3f}, "
                          f"recall {d['recall']:.3f} ({d['poisoned']} rows poisoned)."]
        rows = f["quarantined_rows"]
        if rows:
            lines += ["", "| row id | reason |", "|---|---|"]
            lines += [f"| {md(r['id'])} | {md(r['reason'])} |" for r in rows]
            if f["quarantined"] > len(rows):  # the summary lists the first few
                more = f["quarantined"] - len(rows)
                lines.append(f"| ... | {more} more in quarantine/{md(report['run_id'])}.parquet |")
    else:
        lines.append("Not run.")
    lines.append("")

    a = s.get("audit")
    if a and a.get("enabled", True) and "flagged" in a and "rows_judged" in a:
        lines += ["## Audit (TracIn influence on the golden holdout loss)", "",
                  f"{a['flagged']} of {a['rows_judged']} accepted rows flagged: harm >= {a['threshold']:.4g} (p <= "
                  f"audit.false_alarm_rate {a['false_alarm_rate']:g} against {a['trusted_rows']} trusted rows; "
                  f"checkpoints at epochs {', '.join(map(str, a['checkpoints']))}).", ""]
        if a.get("retrained"):
            lines += [f"Candidate retrained without them: holdout accuracy {a['candidate']['accuracy']:.4f} -> "
                      f"{a['retrained']['accuracy']:.4f}.", ""]
        lines += ["| most harmful row id | harm | p-value |", "|---|---|---|"]
        lines += [f"| {md(r['id'])} | {r['harm']:.4g} | {r['p_value']:.3g} |" for r in a["most_harmful"]] + [""]

    cv = s.get("crossval")
    if cv:
        lines += ["## Cross-validation", "", "| fold | accuracy |", "|---|---|"]
        lines += [f"| {i} | {a:.4f} |" for i, a in enumerate(cv["fold_accuracy"])]
        lines += [f"| mean | {cv['mean_accuracy']:.4f} (spread {cv['spread']:.4f}) |", ""]

    p = s.get("promote")
    if p:
        lines += ["## Promotion gate (golden holdout)", "", f"**{md(p['reason'])}**", "",
                  "| check | value | threshold | verdict |", "|---|---|---|---|"]
        lines += [f"| {c['check']} | {cell(c['value'])} | {c['threshold']} | "
                  f"{ {True: 'pass', False: 'FAIL', None: 'n/a (no champion)'}[c['passed']] } |" for c in p["checks"]]
        champ = p["champion"]
        lines += ["", "| class | candidate recall | champion recall |", "|---|---|---|"]
        lines += [f"| {md(c)} | {r:.4f} | {cell(champ['class_recall'][c]) if champ else 'n/a'} |"
                  for c, r in p["candidate"]["class_recall"].items()]
        lines += [f"| **overall accuracy** | {p['candidate']['accuracy']:.4f} | "
                  f"{cell(champ['accuracy']) if champ else 'n/a'} |", ""]
        outputs = p.get("outputs")
        if outputs:
            lines += [f"Outputs vs the {outputs['serving_model']}: agreement {outputs['holdout']['agreement']:.4f} on "
                      f"the holdout, {cell(outputs['accepted']['agreement'])} on tonight's accepted rows; mean "
                      f"confidence {outputs['holdout']['candidate']['mean_confidence']:.4f} vs "
                      f"{outputs['holdout']['serving']['mean_confidence']:.4f} (`poisongate monitor`).", ""]

    if report.get("plots"):
        lines += ["## Plots", ""] + [f"- `{p}`" for p in report["plots"]] + [""]

    lines += ["## Versions (DVC content hashes)", "", "| path | md5 |", "|---|---|"]
    lines += [f"| {path} | `{md5}` |" for path, md5 in sorted(report["dvc_hashes"].items())]
    return "\n".join(lines) + "\n"


def one_line_per_key(report: dict[str, Any]) -> str:
    """JSON with each top-level key, and each stage, on its own line: a run adds tens of lines to git, not
    hundreds, and a diff still shows which stage changed."""
    def line(value: Any) -> str:
        return json.dumps(value, default=str)

    parts = [f" {line(k)}: {line(v)}" for k, v in report.items() if k != "stages"]
    stages = ",\n".join(f"  {line(k)}: {line(v)}" for k, v in report["stages"].items())
    return "{\n" + ",\n".join([*parts, f' "stages": {{\n{stages}\n }}']) + "\n}\n"


def write(ws: Workspace, report: dict[str, Any]) -> str:
    """runs/<run_id>.md and a .json without the per-row parts (git); returns the markdown."""
    text = markdown(report)
    slim = {**report, "stages": {name: for_git(s) for name, s in report["stages"].items()}}
    atomic_write_text(ws.runs / f"{report['run_id']}.json", one_line_per_key(slim))
    atomic_write_text(ws.runs / f"{report['run_id']}.md", text)
    return text

