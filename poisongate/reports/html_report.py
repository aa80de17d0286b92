"""`poisongate report RUN --html`: one self-contained HTML page of a run (no network, no files beside it): each
stage's verdict and figure, the data gate's failures, the batch-level tests, the quarantine table (sortable), the
promotion table, and the plots inline where they are this run's. Every string from the run is HTML-escaped."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from poisongate.reports.console import describe
from poisongate.store import record
from poisongate.workspace import Workspace, atomic_write_text

MAX_ROWS = 5000  # quarantined rows in the page; all of them are in quarantine/<run_id>.parquet

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}th.sortable{cursor:pointer}.pass{color:#176d2c}.fail{color:#b00020;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}code{background:#f6f6f6}"""

# Click a column head to sort by it (numbers as numbers); click again to reverse.
SCRIPT = """document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent, nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.body.dataset.ready = "yes";"""


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def td(value: Any) -> str:
    """A table cell of a value from the run: numbers to 4 significant digits, everything escaped."""
    return f"<td>{f'{value:.4g}' if isinstance(value, float) else e(value)}</td>"


def verdict_td(passed: bool | None) -> str:
    return {True: '<td class="pass">pass</td>', False: '<td class="fail">REFUSED</td>', None: "<td>n/a</td>"}[passed]


def table(head: list[str], rows: list[list[str]], sortable: bool = False) -> str:
    """`rows` of <td> cells (td, verdict_td)."""
    cls = ' class="sortable"' if sortable else ""
    return (f"<table{cls}><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(r) + "</tr>" for r in rows) + "</tbody></table>")


def stages_section(stages: dict[str, Any]) -> str:
    rows = [[td(name), verdict_td(s["passed"]) if "passed" in s else "<td>done</td>", td(describe(name, s)),
             td(round(float(s.get("seconds", 0)), 1))] for name, s in stages.items()]
    return "<h2>Stages</h2>" + table(["stage", "verdict", "what it found", "seconds"], rows)


def data_gate_section(v: dict[str, Any] | None) -> str:
    if not v:
        return ""
    rows = [[td(f["expectation"]), td(f.get("column") or "table"), td(f.get("observed")), td(f.get("error") or "")]
            for f in v.get("failed", [])]
    return (f"<h2>Data gate (Great Expectations)</h2><p>{v.get('evaluated', 0)} expectations evaluated, "
            f"{len(rows)} failed.</p>" + (table(["expectation", "column", "observed", "error"], rows) if rows else ""))


def filter_section(f: dict[str, Any] | None, kept: tuple[pd.Series, pd.DataFrame] | None) -> str:
    if not f:
        return ""
    out = [f"<h2>Poisoning gate</h2><p>{f['quarantined']} of {f['rows']} rows quarantined "
           f"(Benjamini-Hochberg at filter.fdr {e(f.get('fdr'))}).</p>"]
    tests = f.get("batch_tests", {})
    if tests:
        out.append(table(["batch-level detector", "statistic", "p-value", "level", "result"],
                         [[td(n), td(t["statistic"]), td(t["p_value"]), td(t["alpha"]), verdict_td(bool(t["passed"]))]
                          for n, t in tests.items()]))
    ids, quarantine = kept if kept is not None else (None, pd.DataFrame())
    if len(quarantine):
        shown = quarantine.head(MAX_ROWS)
        p = shown["p_combined"] if "p_combined" in shown.columns else pd.Series([None] * len(shown))
        out.append("<h3>Quarantined rows</h3>" + table(
            ["row", "reason", "combined p"],
            [[td(row), td(why), td(None if pd.isna(pv) else float(pv))]
             for row, why, pv in zip(ids.head(MAX_ROWS), shown["quarantine_reason"], p)], sortable=True))
        if len(quarantine) > MAX_ROWS:
            out.append(f"<p>{len(quarantine) - MAX_ROWS} more rows in the quarantine store.</p>")
    return "".join(out)


def promotion_section(p: dict[str, Any] | None) -> str:
    if not p:
        return ""
    rows = [[td(c["check"]), td(c["value"]), td(c.get("p_value")), td(c["threshold"]), verdict_td(c["passed"])]
            for c in p["checks"]]
    return (f"<h2>Promotion gate (golden holdout)</h2><p><b>{e(p['reason'])}</b></p>"
            + table(["check", "value", "p-value", "bound", "verdict"], rows))


def plots_section(ws: Workspace, report: dict[str, Any], latest: bool) -> str:
    if not report.get("plots"):
        return ""
    if not latest:
        return ("<h2>Plots</h2><p>reports/plots/ holds the latest run's pictures; this run's are in DVC at its "
                "commit (<code>git checkout COMMIT &amp;&amp; dvc checkout reports/plots</code>).</p>")
    images = [f'<figure><img alt="{e(p)}" src="data:image/png;base64,'
              f'{base64.b64encode((ws.root / p).read_bytes()).decode()}"><figcaption>{e(p)}</figcaption></figure>'
              for p in report["plots"] if (ws.root / p).is_file()]
    return "<h2>Plots</h2>" + "".join(images)


def page(ws: Workspace, run_id: str, id_column: str | None = "id") -> str:
    report = json.loads((ws.runs / f"{run_id}.json").read_text())
    s = report["stages"]
    kept = record.kept_rows(ws, run_id, id_column)
    latest = max(p.stem for p in ws.runs.glob("*.json")) == run_id
    ingest = s.get("ingest", {})
    promoted = report["verdict"] == "candidate promoted to champion"
    body = [f"<h1>poisongate run {e(run_id)}</h1>",
            f'<p id="verdict" class="{"pass" if promoted else "fail"}">Verdict: {e(report["verdict"])}</p>',
            f"<p>Incoming batch: {e(ingest.get('rows'))} rows from <code>{e(ingest.get('source'))}</code>; git parent "
            f"<code>{e(report.get('git_parent', ''))[:10]}</code>; champion after the run: "
            f"<code>{e(report.get('champion'))}</code></p>",
            stages_section(s), data_gate_section(s.get("validate")), filter_section(s.get("filter"), kept),
            promotion_section(s.get("promote")), plots_section(ws, report, latest)]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>poisongate run {e(run_id)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")


def write(ws: Workspace, run_id: str, id_column: str | None, out: Path | None = None) -> Path:
    out = out or ws.path("reports", "html", f"{run_id}.html")  # git-ignored: rebuilt from the run at will
    atomic_write_text(out, page(ws, run_id, id_column))
    return out
