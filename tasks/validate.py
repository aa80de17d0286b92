"""Stage `validate`: the Great Expectations data gate on the incoming batch. Its Data Docs page goes to
reports/data_docs/, named by the batch's md5, and its path into the summary for the run report."""
from __future__ import annotations

import json
from typing import Any

from poisongate import data_gate
from poisongate.config import Config
from poisongate.integrity import file_md5
from poisongate.tables import read_table
from poisongate.workspace import Workspace, atomic_write_text


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    result = data_gate.run_suite(read_table(ws.incoming), json.loads(ws.suite.read_text()))
    docs = ws.path("reports", "data_docs", f"validate-{file_md5(ws.incoming)[:12]}.html")
    atomic_write_text(docs, data_gate.data_docs_html(result))
    return {**data_gate.summarize(result), "data_docs": str(docs.relative_to(ws.root))}
