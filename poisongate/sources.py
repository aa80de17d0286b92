"""Where the data comes from: the embedded default (scikit-learn's digits, split once, seeded) or the user's
files, read under data.max_bytes and refused before parsing when they do not match their SHA-256 pin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from poisongate import integrity
from poisongate.config import DataConfig, Split
from poisongate.errors import PoisongateError
from poisongate.schema import Schema, batch_problem, schema_from_reference
from poisongate.tables import parse_table, read_bytes, read_table
from poisongate.workspace import Workspace

DIGITS = "digits"


def load_digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.float32), columns=digits.feature_names)
    frame.insert(0, "label", digits.target.astype(np.int64))
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    return frame


def split_default(frame: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Deterministic, stratified: trusted reference, golden holdout, then the incoming batches."""
    from sklearn.model_selection import train_test_split

    rest, reference = train_test_split(frame, test_size=split.reference_fraction, stratify=frame["label"],
                                       random_state=split.seed)
    holdout_share = split.holdout_fraction / (1.0 - split.reference_fraction)
    incoming, holdout = train_test_split(rest, test_size=holdout_share, stratify=rest["label"], random_state=split.seed)
    batches = np.array_split(incoming.sort_values("id").to_numpy(), split.batches)
    batches = [pd.DataFrame(b, columns=frame.columns).astype(frame.dtypes.to_dict()) for b in batches]
    return reference.sort_values("id"), holdout.sort_values("id"), batches


def user_path(ws: Workspace, data: DataConfig, key: str) -> Path:
    path = Path(getattr(data, key))  # set: checked when params.yaml was parsed
    return path if path.is_absolute() else ws.root / path


def read_user_file(ws: Workspace, data: DataConfig, key: str) -> tuple[pd.DataFrame, Path]:
    """Read data.<key> under data.max_bytes, refusing it before parsing if it does not match its SHA-256 pin."""
    path = user_path(ws, data, key)
    raw = read_bytes(path, data.max_bytes)
    integrity.verify(path, raw, getattr(data.sha256, key))
    return parse_table(raw, path, data.max_bytes), path


def load_trusted(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    """The trusted reference and golden holdout, with the schema they define. Users' trusted files get the
    same checks as an incoming batch: trusted, but they may still be broken."""
    if data.source == DIGITS:
        reference, holdout, _ = split_default(load_digits_frame(), data.split)
        return reference, holdout, schema_from_reference(reference, data, "digits reference")
    (reference, ref_path), (holdout, hold_path) = (read_user_file(ws, data, "reference"),
                                                   read_user_file(ws, data, "holdout"))
    schema = schema_from_reference(reference, data, ref_path)
    for frame, path in ((reference, ref_path), (holdout, hold_path)):
        problem = batch_problem(frame, schema, str(path), data.min_rows)
        if problem:
            raise PoisongateError(problem)
    return reference[schema.columns], holdout[schema.columns], schema


def load_source_batch(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, str]:
    """The incoming batch as received, and the name its problems are reported under."""
    if data.source != DIGITS:
        frame, path = read_user_file(ws, data, "source")
        return frame, str(path)
    _, _, batches = split_default(load_digits_frame(), data.split)
    return batches[data.batch], f"digits batch {data.batch}"  # data.batch < split.batches: checked when parsed


def workspace_reference(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, Schema]:
    """The reference the `reference` stage wrote, and the schema it defines."""
    reference = read_table(ws.reference)
    return reference, schema_from_reference(reference, data, ws.reference)
