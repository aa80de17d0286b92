"""The console's stage lines and the HTML report page: what they show, and that a user's strings are shown as
text (HTML-escaped, terminal escapes made visible)."""
import json

import pandas as pd

from poisongate.reports import html_report
from poisongate.reports.console import printable, stage_line
from poisongate.workspace import Workspace


def test_a_stage_line_says_verdict_figure_and_seconds_and_escapes_what_a_user_named():
    line = stage_line("filter", {"passed": False, "rows": 150, "quarantined": 90, "seconds": 21.43,
                                 "batch_tests": {"batch_shift": {"p_value": 1e-9}},
                                 "reason": "60% of rows flagged > filter.max_quarantine_share 0.5"})
    assert line.split()[:2] == ["filter", "REFUSED"] and line.endswith("(21.4 s)")
    assert "90 of 150 rows quarantined; batch_shift p=1e-09: 60% of rows flagged" in line
    assert stage_line("train", {"seconds": 1})[:20].split() == ["train", "done"]  # an old summary: still a line
    assert printable("batch\x1b[2J.csv") == "batch\\x1b[2J.csv"  # a terminal escape in a file name is shown


HOSTILE = '<script>alert("x")</script>'


def test_the_html_page_escapes_every_string_of_the_run(tmp_path):
    """A run whose source, row ids, reasons and checks carry markup: the page holds it as text, never as tags;
    the quarantine table is sortable; the verdict is there."""
    ws = Workspace(tmp_path)
    ws.runs.mkdir()
    ws.quarantine_store.mkdir()
    run_id = "20261202T000000000000Z"
    stages = {"ingest": {"passed": True, "rows": 3, "source": f"{HOSTILE}.csv", "seconds": 0.1},
              "filter": {"passed": False, "rows": 3, "quarantined": 2, "fdr": 0.1, "seconds": 1.0,
                         "reason": HOSTILE, "batch_tests": {}},
              "promote": {"passed": False, "reason": HOSTILE, "seconds": 1.0, "candidate": {"accuracy": 0.5},
                          "checks": [{"check": HOSTILE, "value": 0.1, "p_value": 0.001, "threshold": 0.01,
                                      "passed": False}]}}
    (ws.runs / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "verdict": HOSTILE, "stages": stages,
                                                       "plots": []}))
    pd.DataFrame({"id": [HOSTILE, "b"], "quarantine_reason": [HOSTILE, "r"], "p_combined": [0.001, 0.01]}
                 ).to_parquet(ws.quarantine_store / f"{run_id}.parquet")
    page = html_report.write(ws, run_id, "id").read_text()
    assert "<script>alert" not in page and page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 6
    assert page.count("<script>") == 1  # the page's own sorting script, and only it
    assert '<table class="sortable">' in page and 'id="verdict" class="fail"' in page


def test_progress_bars_show_on_a_terminal_only_and_one_at_a_time():
    import io

    from rich.console import Console

    from poisongate.reports import progress

    with progress.bar("training: epochs", 3) as advance:  # pytest's stderr is no terminal: no bar
        advance()
        assert not progress._active.locked()
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    with progress.bar("training: epochs", 3, console=terminal) as advance:
        with progress.bar("poisoning gate: scoring chunks", 2, console=terminal) as inner:
            inner()  # nested work adds no second bar (rich allows one live display)
        for _ in range(3):
            advance()
    shown = screen.getvalue()
    assert "training: epochs" in shown and "scoring chunks" not in shown
