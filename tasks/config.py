"""params.yaml, the workspace's paths, and the one exception users see."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class PoisongateError(Exception):
    """A mistake a user (or an attacker's file) can cause: one line naming the file, the place and the fix."""


class GateRefused(PoisongateError):
    """A gate said no: the flow ends Failed with this one-line reason."""


@dataclass(frozen=True)
class Workspace:
    """A DVC project: params.yaml and dvc.yaml at its root, every artefact below it."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

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
    def quarantine(self) -> Path:
        return self.path("data", "quarantine.parquet")

    @property
    def candidate(self) -> Path:
        return self.path("models", "candidate")

    @property
    def suite(self) -> Path:
        return self.path("expectations", "suite.json")

    def report(self, stage: str) -> Path:
        return self.path("reports", f"{stage}.json")

    # Append-only stores (`dvc add`): nothing in them is ever deleted.
    @property
    def quarantine_store(self) -> Path:
        return self.path("quarantine")

    @property
    def registry(self) -> Path:
        return self.path("registry")

    @property
    def runs(self) -> Path:
        return self.path("runs")


def load_params(ws: Workspace) -> dict[str, Any]:
    path = ws.path("params.yaml")
    try:
        with open(path) as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise PoisongateError(f"{path}: not found; run `poisongate init {ws.root}` to create a workspace") from None
    except yaml.YAMLError as e:
        raise PoisongateError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
    if not isinstance(params, dict):
        raise PoisongateError(f"{path}: expected a mapping of sections; fix the file")
    return params


def set_params(ws: Workspace, updates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write run options into params.yaml (comments kept), so dvc.lock records what really ran."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = ws.path("params.yaml")
    doc = rt.load(path.read_text())
    for section, values in updates.items():
        for key, value in values.items():
            if value is not None:
                doc[section][key] = value
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        rt.dump(doc, f)
    return load_params(ws)


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
