"""Reliability figures: the bad-input corpus and tampered sources through ingest, and (with --crash) SIGKILL at
every stage of `poisongate run` followed by a rerun. Writes benchmarks/results/reliability.md.

Timing baseline: ingesting the good batch; each refusal's time is given as a ratio to it (same run, medians).

    python3 -m uv run --locked python benchmarks/reliability.py [--crash] [--repeats 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from bad_inputs import CORPUS, MAX_BYTES, MAX_ROWS  # noqa: E402

from poisongate import config as configuration  # noqa: E402
from poisongate.config import Config  # noqa: E402
from poisongate.data_gate import build_suite, validate_frame  # noqa: E402
from poisongate.errors import PoisongateError, one_line  # noqa: E402
from poisongate.reports import md as escape  # noqa: E402
from poisongate.schema import schema_from_reference  # noqa: E402
from poisongate.sources import load_digits_frame, split_default  # noqa: E402
from poisongate.store import record, versioning  # noqa: E402
from poisongate.tables import write_table  # noqa: E402
from poisongate.workspace import Workspace  # noqa: E402
from tasks import ingest  # noqa: E402


def timed_ingest(ws: Workspace, config: Config, repeats: int) -> tuple[str, str, int, int, float]:
    """(outcome, one-line message, rows read, rows kept for quarantine, median seconds) of ingesting the source."""
    seconds = []
    for _ in range(repeats):
        ws.incoming.unlink(missing_ok=True)
        start = time.perf_counter()
        try:
            summary = ingest.run(ws, config)
            if summary["passed"]:
                outcome, message, read = "passed to the data gate", "", summary["rows"]
            else:
                outcome, message, read = "refused", summary["reason"], summary["rows"]
        except PoisongateError as e:
            outcome, message, read = "refused unread", str(e), 0
        except Exception as e:  # what must never happen: a traceback instead of one line
            outcome, message, read = "TRACEBACK", f"{type(e).__name__}: {e}", 0
        seconds.append(time.perf_counter() - start)
    kept = len(pd.read_parquet(ws.incoming)) if ws.incoming.exists() else 0
    return outcome, message, read, kept, statistics.median(seconds)


def tampered_sources(good_csv: Path) -> dict[str, bytes]:
    text = good_csv.read_bytes()
    lines = text.splitlines(keepends=True)
    flipped = lines[1].replace(b",0,", b",1,", 1) if b",0," in lines[1] else lines[1] + b" "
    return {
        "one label flipped": b"".join([lines[0], flipped, *lines[2:]]),
        "one byte changed": text[:-2] + bytes([text[-2] ^ 1]) + text[-1:],
        "a row appended": text + lines[-1],
        "a row removed": b"".join(lines[:-1]),
        "truncated in transit": text[: len(text) // 2],
        "whole file swapped": b"".join([lines[0], *reversed(lines[1:])]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crash", action="store_true", help="also kill `poisongate run` at every stage (minutes)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/reliability.md"))
    args = parser.parse_args()

    config = configuration.load(ROOT / "params.yaml")
    reference, _, batches = split_default(load_digits_frame(), config.data.split)
    tmp = Path(tempfile.mkdtemp(prefix="poisongate-reliability-"))
    ws = Workspace(tmp / "ws")
    write_table(reference, ws.reference)

    def run(source: Path, **data) -> tuple[str, str, int, int, float]:
        changed = config.replace("data", source=str(source), reference="reference.csv", holdout="holdout.csv",
                                 max_bytes=MAX_BYTES, max_rows=MAX_ROWS,
                                 **data)  # sha256: merged by key
        return timed_ingest(ws, changed, args.repeats)

    good = tmp / "good.csv"
    batches[1].to_csv(good, index=False)
    baseline = run(good)
    assert baseline[0] == "passed to the data gate"
    schema = schema_from_reference(reference, config.data, "reference")
    suite = build_suite(reference, schema, config.validation, config.data.min_rows, len(batches[1]))
    rows, secrets = [], 0
    for kind, (expected, make) in CORPUS.items():
        path = make(batches[1], tmp)
        outcome, message, read, kept, seconds = run(path)
        if outcome == "passed to the data gate":
            gate = validate_frame(pd.read_parquet(ws.incoming), suite)
            outcome = "passed both gates" if gate["passed"] else "refused by the data gate"
            message = record.verdict({"ingest": {"source": str(path)}, "validate": gate})[1]
        # a file that must not be read (a link to another file, a FIFO) reached the workspace
        secrets += int(expected == "unreadable" and ws.incoming.exists())
        named = one_line(str(path)) in message and "\n" not in message and ";" in message  # the file, then the fix
        rows.append((kind, expected, outcome, read, kept, seconds, message.replace(str(tmp) + "/", ""), named))
    lost = sum(r[3] - r[4] for r in rows)
    refused = [r for r in rows if r[2].startswith("refused")]
    named = sum(r[7] for r in refused)
    tracebacks = sum(r[2] == "TRACEBACK" for r in rows)
    wrong = sum((r[1] == "accepted") != (r[2] == "passed both gates") for r in rows)

    pin = hashlib.sha256(good.read_bytes()).hexdigest()
    tampered = []
    for name, content in tampered_sources(good).items():
        path = tmp / "pinned.csv"
        path.write_bytes(content)
        outcome = run(path, sha256={"source": pin})[0]
        (tmp / "pinned.csv.sha256").write_text(f"{pin}  pinned.csv\n")
        outcome_sidecar = run(path)[0]
        (tmp / "pinned.csv.sha256").unlink()
        tampered.append((name, outcome, outcome_sidecar))
    accepted = sum((o != "refused unread") + (s != "refused unread") for _, o, s in tampered)
    path = tmp / "pinned.csv"
    path.write_bytes(good.read_bytes())
    untampered_ok = run(path, sha256={"source": pin})[0] == "passed to the data gate"

    crash = None
    if args.crash:
        from test_crash import KILL_AFTER, crash_campaign

        root = tmp / "crash" / "ws"
        versioning.init(Workspace(root), remote=str(tmp / "crash" / "remote"))  # as `poisongate init` writes it
        start = time.perf_counter()
        env = {**os.environ, "PREFECT_HOME": str(tmp / "crash" / "prefect"),
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # `poisongate` and `dvc` of this environment
        crash = crash_campaign(root, env)
        crash["seconds"] = time.perf_counter() - start

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        "# Reliability and security results", "",
        f"- Date: {now}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- Command: `python3 -m uv run --locked python benchmarks/reliability.py{' --crash' if args.crash else ''} "
        f"--repeats {args.repeats}`",
        f"- data.max_bytes / max_rows for the corpus: {MAX_BYTES} bytes / {MAX_ROWS} rows; timings are medians of "
        f"{args.repeats} ingests",
        "", "## Summary", "",
        "| figure | value |", "|---|---|",
        f"| bad-input kinds tried | {len(rows)} |",
        f"| refused (at ingest, or by the data gate) | {len(refused)} |",
        f"| refused with one line naming the file and the fix | {named} of {len(refused)} |",
        f"| tracebacks instead of one line | {tracebacks} |",
        f"| valid files refused or bad files accepted | {wrong} |",
        f"| rows lost from readable refused batches (not kept for quarantine) | {lost} |",
        f"| files that must not be read copied into the workspace (links, FIFOs) | {secrets} |",
        f"| tampered sources tried (params.yaml pin and sidecar) | {2 * len(tampered)} |",
        f"| tampered sources accepted | {accepted} |",
        f"| untampered pinned source accepted | {'yes' if untampered_ok else 'NO'} |",
    ]
    if crash:
        completed = int(crash["rerun_exit"] == 0)
        before_promotion = crash["faults"][:list(KILL_AFTER).index("promote")]
        changed_before_promotion = sum(not f["champion_unchanged"] for f in before_promotion)
        md += [
            f"| faults injected (SIGKILL of `poisongate run`, one per stage/step) | {len(crash['faults'])} |",
            f"| runs killed as planned | {sum(f['killed'] for f in crash['faults'])} |",
            f"| reruns after the faults that completed (exit 0, git clean) | {completed} of 1 (+ each killed run was "
            "itself a rerun that got past the previous kill point) |",
            f"| rows lost after the faults | {crash['rows_lost']} |",
            f"| half-written files left after the rerun | {len(crash['leftovers'])} |",
            f"| champion changed by a kill before promotion | {changed_before_promotion} |",
            f"| crash campaign wall time | {crash['seconds']:.0f} s |",
        ]
    md += ["", "## Bad inputs", "",
           f"Baseline: ingesting the good {len(batches[1])}-row batch, {baseline[4] * 1000:.1f} ms.", "",
           "| kind | expected | outcome | rows read / kept for quarantine | time vs good batch | message |",
           "|---|---|---|---|---|---|"]
    md += [f"| {escape(k)} | {e} | {o} | {r} / {kept} | {s / baseline[4]:.2f}x | {escape(m[:160])} |"
           for k, e, o, r, kept, s, m, _ in rows]
    md += ["", "## Tampered sources (pinned by SHA-256)", "",
           "| change in transit | pin in params.yaml | sidecar .sha256 |", "|---|---|---|"]
    md += [f"| {n} | {o} | {s} |" for n, o, s in tampered]
    if crash:
        md += ["", "## Faults injected", "", "| killed just after | killed | champion unchanged |", "|---|---|---|"]
        md += [f"| {f['point']} | {f['killed']} | {f['champion_unchanged']} |" for f in crash["faults"]]
    text = "\n".join(md) + "\n"
    Path(args.out).write_text(text)
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
