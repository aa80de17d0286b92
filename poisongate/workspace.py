"""The workspace (a git repo + DVC project: params.yaml and dvc.yaml at its root) and atomic writes."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RUN_ID_FORMAT = "%Y%m%dT%H%M%S%fZ"  # UTC, sortable: run ids, rollback records


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(RUN_ID_FORMAT)


def run_time(run_id: str) -> datetime:
    return datetime.strptime(run_id, RUN_ID_FORMAT)


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def params(self) -> Path:
        return self.path("params.yaml")

    # Stage outputs (dvc.yaml `outs`), rewritten by every run.
    @property
    def reference(self) -> Path:
        return self.path("data", "reference.parquet")

    @property
    def holdout(self) -> Path:
        return self.path("data", "holdout.parquet")

    @property
    def incoming(self) -> Path:
        return self.path("data", "incoming.parquet")

    @property
    def clean(self) -> Path:
        return self.path("data", "clean.parquet")

    @property
    def audited(self) -> Path:
        return self.path("data", "audited.parquet")

    @property
    def audit_quarantine(self) -> Path:
        return self.path("data", "audit_quarantine.parquet")

    @property
    def audited_model(self) -> Path:
        return self.path("models", "audited")

    @property
    def quarantine(self) -> Path:
        return self.path("data", "quarantine.parquet")

    @property
    def scores(self) -> Path:
        return self.path("data", "scores.parquet")

    # The versioned training set (`dvc add`): grows by each promoted run's accepted rows; rollback restores it.
    @property
    def training(self) -> Path:
        return self.path("data", "training.parquet")

    @property
    def candidate(self) -> Path:
        return self.path("models", "candidate")

    @property
    def suite(self) -> Path:
        return self.path("expectations", "suite.json")

    @property
    def user_expectations(self) -> Path:
        return self.path("expectations", "user.json")

    def report(self, stage: str) -> Path:
        return self.path("reports", f"{stage}.json")

    # Append-only stores (`dvc add`): nothing in them is ever deleted.
    @property
    def quarantine_store(self) -> Path:
        return self.path("quarantine")

    def quarantine_file(self, run_id: str) -> Path:
        """One run's quarantined rows, as received, with their reasons and scores."""
        return self.quarantine_store / f"{run_id}.parquet"

    @property
    def scores_store(self) -> Path:
        return self.path("scores")

    @property
    def registry(self) -> Path:
        return self.path("registry")

    @property
    def runs(self) -> Path:
        return self.path("runs")


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class atomic_path:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
