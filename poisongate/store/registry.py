"""The model registry: every candidate's Orbax checkpoint with its decision, and the champion pointer.

registry/<run_id>/checkpoint   every candidate, kept whatever the decision
registry/<run_id>/decision.json
registry/champion.json         replaced atomically, and only on a pass (or by a recorded rollback)"""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poisongate.errors import REPAIR_REGISTRY, RegistryDamaged
from poisongate.workspace import Workspace, atomic_write_text


def register_candidate(ws: Workspace, run_id: str, decision: dict[str, Any]) -> None:
    """Keep the candidate with its decision; point the champion at it only if it passed."""
    staging = ws.registry / f".{run_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(ws.audited_model, staging / "checkpoint")
    atomic_write_text(staging / "decision.json", json.dumps(decision, indent=1) + "\n")
    staging.rename(ws.registry / run_id)  # the entry appears complete or not at all
    if decision["passed"]:
        set_champion(ws, run_id, accuracy=decision["candidate"]["accuracy"])


def champion_checkpoint(ws: Workspace) -> Path | None:
    run_id = champion_id(ws)
    return ws.registry / run_id / "checkpoint" if run_id else None


def ensure_pointer(ws: Workspace) -> None:
    """A workspace starts with a pointer to no champion (the promote stage reads it, so it always exists)."""
    if not (ws.registry / "champion.json").exists():
        atomic_write_text(ws.registry / "champion.json", json.dumps({"run_id": None}, indent=1) + "\n")


def champion_id(ws: Workspace, strict: bool = True) -> str | None:
    """The champion's run id (None: no champion yet). A pointer that is not one is an error naming the repair, or
    None where `strict` is off (the record step, which must finish)."""
    pointer = ws.registry / "champion.json"
    if not pointer.exists():
        return None
    try:
        run_id = json.loads(pointer.read_text())["run_id"]
        if run_id is not None and not (ws.registry / str(run_id) / "checkpoint").is_dir():
            raise ValueError(f"registry/{run_id}/checkpoint is missing")
        return run_id
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        if not strict:
            return None
        raise RegistryDamaged(f"{pointer}: not a valid champion pointer ({str(e)[:120]}); {REPAIR_REGISTRY}") from None


def set_champion(ws: Workspace, run_id: str, **why: Any) -> None:
    """Point the champion at a registered model: one atomic rename."""
    entry = {"run_id": run_id, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"), **why}
    atomic_write_text(ws.registry / "champion.json", json.dumps(entry, indent=1) + "\n")
