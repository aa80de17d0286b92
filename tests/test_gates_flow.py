"""The poisoning gate inside the real flow: its reasons reach the run report, and a batch past the refusal
bound fails the flow (ephemeral Prefect, real GX, git + DVC, no mocks)."""
import json

import pandas as pd
import pytest
from conftest import set_params

from flows.retrain import retrain

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_batch_over_the_quarantine_bound_fails_the_flow_with_every_reason_in_the_report(make_workspace,
                                                                                        prefect_harness):
    ws = make_workspace()
    set_params(ws, {"filter": {"max_quarantine_share": 0.2}})
    state = retrain(workspace=str(ws.root), attack="label_flip", rate=0.3, return_state=True)
    assert state.is_failed() and "batch refused by the poisoning gate" in state.message
    report = json.loads(max(ws.runs.glob("*.json")).read_text())
    gate = report["stages"]["filter"]
    assert gate["passed"] is False and "train" not in report["stages"]
    assert gate["flagged_by"]["knn_label"] > 0 and gate["flagged_by"]["confident_learning"] > 0
    kept = pd.read_parquet(ws.quarantine_store / f"{report['run_id']}.parquet")
    reasons = kept["quarantine_reason"].tolist()
    assert len(reasons) == gate["rows"] and all(r.startswith("batch refused") for r in reasons)
    assert any("knn_label" in r and "confident_learning" in r for r in reasons)  # every reason, not the first
    markdown = max(ws.runs.glob("*.md")).read_text()
    assert "knn_label" in markdown and "confident_learning" in markdown and "GX Data Docs" in markdown
    assert len(kept) == gate["rows"] and kept["quarantine_reason"].str.contains("label").any()
    assert not ws.clean.exists()  # nothing learned from a refused batch
