"""What `poisongate init DIR` writes into a workspace that lacks it: the shipped params.yaml with the user's data
settings, dvc.yaml with its code deps at this checkout, prefect.yaml with its flows at this checkout. Files the
workspace already has are kept: a second init changes nothing."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from poisongate import config as configuration
from poisongate.errors import PoisongateError
from poisongate.workspace import Workspace, atomic_write_text

CHECKOUT = Path(__file__).resolve().parents[1]  # the templates and the code the stages run
DATA_KEYS = ("source", "reference", "holdout", "label_column", "id_column")  # settable by `init` flags
PATH_KEYS = ("source", "reference", "holdout")


def template(name: str) -> str:
    path = CHECKOUT / name
    if not path.is_file():
        raise PoisongateError(f"{path}: not found; `poisongate init` needs a poisongate checkout (run it from a "
                              "clone: `python3 -m uv run --locked poisongate init DIR`)")
    return path.read_text()


def user_path(ws: Workspace, key: str, value: str) -> str:
    """A data path given on the command line (relative to where the user is) as params.yaml holds it: relative to
    the workspace when inside it (the two move together), else absolute. The trusted files must exist; the
    source may not yet (the feed writes tonight's batch there)."""
    path = Path(value).expanduser().resolve()
    if key != "source" and not path.is_file():
        raise PoisongateError(f"{value}: not found or not a file; give --{key} the path of a CSV, Parquet or npz "
                              "file")
    inside = path.is_relative_to(ws.root)
    return os.path.relpath(path, ws.root) if inside else str(path)


def params_text(ws: Workspace, data: dict[str, str]) -> str:
    """The shipped params.yaml, comments kept, with `data` set in its data section; parsed before it is written,
    so a bad combination (a source without its reference) is refused as params.yaml would be."""
    text = template("params.yaml")
    for key, value in data.items():
        value = user_path(ws, key, value) if key in PATH_KEYS else value
        # JSON strings are YAML scalars: any path or column name round-trips, quotes and colons included.
        line = json.dumps(value)
        text, found = re.subn(rf"(?m)^(  {key}:) *[^#\n]*?( *#.*)?$", lambda m, v=line: f"{m[1]} {v}{m[2] or ''}",
                              text, count=1)
        assert found, key  # the shipped params.yaml has every DATA_KEYS line
    configuration.parse(configuration.loads(text), ws.params, "fix the flags of `poisongate init`")
    return text


def dvc_yaml() -> str:
    """The project's stages, their code deps at this checkout."""
    return template("dvc.yaml").replace("\n  - code: .\n", f"\n  - code: {json.dumps(str(CHECKOUT))}\n")


def prefect_yaml() -> str:
    """The project's deployments, their flows at this checkout (the workspace is the working directory)."""
    return template("prefect.yaml").replace("entrypoint: flows/", f"entrypoint: {CHECKOUT}/flows/")


def write_missing(ws: Workspace, data: dict[str, str]) -> list[str]:
    """Write params.yaml, dvc.yaml and prefect.yaml where missing; returns the files written. Flags for a
    workspace that has its params.yaml already are refused: they would be silently ignored."""
    written = []
    if ws.params.exists() and data:
        raise PoisongateError(f"{ws.params}: exists; set data.{next(iter(data))} there instead of with a flag of "
                              "`poisongate init`")
    files = {"params.yaml": lambda: params_text(ws, data), "dvc.yaml": dvc_yaml, "prefect.yaml": prefect_yaml}
    if ws.root == CHECKOUT:
        return written
    for name, text in files.items():
        if not ws.path(name).exists():
            atomic_write_text(ws.path(name), text())
            written.append(name)
    return written
