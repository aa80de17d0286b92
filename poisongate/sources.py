"""Where the data comes from: the embedded default (scikit-learn's digits, split once, seeded) or the user's
files, read under data.max_bytes and refused before parsing when they do not match their SHA-256 pin."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from poisongate import integrity, training_set
from poisongate.config import DataConfig, Split
from poisongate.errors import PoisongateError
from poisongate.schema import Schema, batch_problem, exact_ids, id_kind, schema_from_reference, show, with_exact_ids
from poisongate.tables import Limits, parse_table, read_bytes, read_table
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
    """Deterministic, stratified: trusted reference, golden holdout, then the incoming batches (ids sorted)."""
    from sklearn.model_selection import train_test_split

    rest, reference = train_test_split(frame, test_size=split.reference_fraction, stratify=frame["label"],
                                       random_state=split.seed)
    holdout_share = split.holdout_fraction / (1.0 - split.reference_fraction)
    incoming, holdout = train_test_split(rest, test_size=holdout_share, stratify=rest["label"], random_state=split.seed)
    # Nights drawn at random, not cut by id: digits' ids run writer by writer, and a night of a few writers is
    # real drift, not the stationary clean loop the default shows.
    order = np.random.default_rng(split.seed).permutation(len(incoming))
    batches = [incoming.iloc[np.sort(part)].sort_values("id").reset_index(drop=True)
               for part in np.array_split(order, split.batches)]
    return reference.sort_values("id"), holdout.sort_values("id"), batches


def user_path(ws: Workspace, data: DataConfig, key: str) -> Path:
    path = Path(getattr(data, key))  # set: checked when params.yaml was parsed
    return path if path.is_absolute() else ws.root / path


def load_trusted(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    """The trusted reference and golden holdout, with the schema they define. Users' trusted files get the
    same checks as an incoming batch: trusted, but they may still be broken."""
    if data.source == DIGITS:
        reference, holdout, _ = split_default(load_digits_frame(), data.split)
        return reference, holdout, schema_from_reference(reference, data, "digits reference")
    (reference, ref_path, _), (holdout, hold_path, _) = (read_user_file(ws, data, "reference"),
                                                         read_user_file(ws, data, "holdout"))
    schema = schema_from_reference(reference, data, ref_path)
    for frame, path in ((reference, ref_path), (holdout, hold_path)):
        problem = batch_problem(frame, schema, str(path), data.min_rows)
        if problem:
            raise PoisongateError(problem)
    absent = [c for c in schema.classes if not (holdout[schema.label] == c).any()]
    if absent:
        raise PoisongateError(f"{hold_path}: class {show(absent[0])} of the reference has no row in the holdout, so "
                              "its recall cannot be judged; add rows of every class to the holdout")
    return with_exact_ids(reference[schema.columns], schema), with_exact_ids(holdout[schema.columns], schema), schema


def read_user_file(ws: Workspace, data: DataConfig, key: str) -> tuple[pd.DataFrame, Path, str]:
    """Read data.<key> under data.max_bytes, refusing it before parsing if it does not match its SHA-256 pin;
    with the file's SHA-256."""
    path = user_path(ws, data, key)
    raw = read_bytes(path, data.max_bytes, data.follow_symlinks)
    sha256 = integrity.verify(path, raw, getattr(data.sha256, key))
    limits = Limits(data.max_bytes, data.max_rows, (data.id_column,) if data.id_column else ())
    frame = parse_table(raw, path, limits)
    if data.id_column in frame.columns:  # read as text, kept as int64 where every id is one exactly
        frame[data.id_column] = exact_ids(frame[data.id_column], id_kind(frame[data.id_column]))[0]
    return frame, path, sha256


def digits_batch_name(batch: int) -> str:
    return f"digits batch {batch}"


def next_batch(data: DataConfig, used_sources: set[str]) -> int:
    """data.batch, or the first batch of the embedded default that no row of the training set came from."""
    if data.batch is not None:
        return data.batch
    for batch in range(data.split.batches):
        if digits_batch_name(batch) not in used_sources:
            return batch
    raise PoisongateError(f"every one of the {data.split.batches} batches of the embedded default is in the "
                          "training set; run one again with `--batch K`, or bring your own data (data.source)")


def load_source_batch(ws: Workspace, data: DataConfig, used_sources: set[str] = frozenset()
                      ) -> tuple[pd.DataFrame, str, str]:
    """The incoming batch as received, the name its problems are reported under, and its SHA-256 (of the
    file's bytes; of its CSV text for the embedded default)."""
    if data.source != DIGITS:
        frame, path, sha256 = read_user_file(ws, data, "source")
        return frame, str(path), sha256
    _, _, batches = split_default(load_digits_frame(), data.split)
    batch = next_batch(data, used_sources)  # < split.batches: checked when params.yaml was parsed
    frame = batches[batch]
    return frame, digits_batch_name(batch), hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def workspace_reference(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, Schema]:
    """The reference the `reference` stage wrote, and the schema it defines."""
    reference = read_table(ws.reference)
    return reference, schema_from_reference(reference, data, ws.reference)


def gate_reference(ws: Workspace, data: DataConfig) -> tuple[pd.DataFrame, Schema]:
    """What the gates are fit on: the trusted reference plus the training-set rows of runs a person trusted
    (`poisongate trust`); never rows that were only accepted."""
    reference, schema = workspace_reference(ws, data)
    runs = training_set.trusted_runs(ws) - {training_set.REFERENCE}
    if not runs:
        return reference, schema
    training = read_table(ws.training)
    trusted = training[training[training_set.RUN].isin(sorted(runs))]
    if not len(trusted):
        return reference, schema
    return pd.concat([reference[schema.columns], trusted[schema.columns]], ignore_index=True), schema
