"""`poisongate`: the command line. A user-caused failure ends in one line on stderr: exit status 2 for a bad
params.yaml value or run option (before anything runs), 1 for everything else (a bad file, a refused gate)."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Prefect gives its temporary API server 20 s to start: too little on a busy machine, and the run is lost.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from poisongate import config as configuration  # noqa: E402  (after the environment above)
from poisongate.errors import HideUserTracebacks, PoisongateError, machine_error  # noqa: E402
from poisongate.workspace import Workspace  # noqa: E402


def init(ws: Workspace, args: argparse.Namespace) -> None:
    from poisongate import scaffold
    from poisongate.store import versioning

    ws = Workspace(args.dir) if args.dir else ws
    data = {key: getattr(args, key) for key in scaffold.DATA_KEYS if getattr(args, key) is not None}
    written = versioning.init(ws, args.remote, data)
    remote = versioning.run(ws, "dvc", "remote", "list").split()
    print(f"poisongate: workspace {ws.root} ready ({', '.join(written) or 'nothing new written'}; DVC remote "
          f"{remote[1] if len(remote) > 1 else '?'}); next: poisongate --workspace {ws.root} run")


def run(ws: Workspace, args: argparse.Namespace) -> None:
    attack, rate = (args.simulate, args.rate) if args.simulate else (None, None)
    # A bad params.yaml value or run option is refused (exit 2) before Prefect starts.
    configuration.with_options(configuration.load(ws.params), configuration.run_options(attack, rate, args.batch))
    from flows.retrain import retrain

    retrain(workspace=str(ws.root), attack=attack, rate=rate, batch=args.batch, retrain_only=args.retrain_only)


def redteam(ws: Workspace, args: argparse.Namespace) -> None:
    configuration.load(ws.params)
    from flows.redteam import redteam as redteam_flow

    if args.nights:
        from flows.redteam import redteam_over_nights

        redteam_over_nights(workspace=str(ws.root), nights=args.nights, attacks=args.attacks, rates=args.rates,
                            out=args.out)
        return
    seeds = list(range(args.seeds)) if args.seeds else None
    redteam_flow(workspace=str(ws.root), attacks=args.attacks, rates=args.rates, seeds=seeds, out=args.out)


def history(ws: Workspace, args: argparse.Namespace) -> None:
    import json

    from poisongate.store.history import history, table
    from poisongate.store.registry import champion_id

    rows = history(ws)
    print("\n".join(json.dumps(r) for r in rows) if args.json else table(rows, champion_id(ws)))


def status(ws: Workspace, args: argparse.Namespace) -> None:
    from flows.schedule import next_scheduled
    from poisongate.reports.console import printable
    from poisongate.store.history import status as lines

    print("\n".join(printable(line) for line in lines(ws, next_scheduled())))


def monitor(ws: Workspace, args: argparse.Namespace) -> None:
    import json

    from poisongate.output_monitor import monitor_table, serving_over_runs
    from poisongate.reports.console import printable

    reports = [json.loads(p.read_text()) for p in sorted(ws.runs.glob("*.json"))]
    print("\n".join(printable(line) for line in monitor_table(serving_over_runs(reports)[-args.last:]).splitlines()))


def report(ws: Workspace, args: argparse.Namespace) -> None:
    from poisongate.reports import html_report
    from poisongate.store.history import find, history

    run_id = find(history(ws), args.run)["run_id"]
    if not (ws.runs / f"{run_id}.json").is_file():
        raise PoisongateError(f"run {run_id} was never recorded (it crashed): it has no report; "
                              "`poisongate history` says what it left")
    if not args.html:
        print((ws.runs / f"{run_id}.md").read_text(), end="")
        return
    id_column = configuration.load(ws.params).data.id_column
    out = html_report.write(ws, run_id, id_column, Path(args.out) if args.out else None)
    print(f"poisongate: {out}")


def rollback(ws: Workspace, args: argparse.Namespace) -> None:
    from poisongate.store.lock import workspace_lock
    from poisongate.store.rollback import rollback as restore

    with workspace_lock(ws, configuration.lock_timeout(ws.params)):  # works whatever params.yaml holds now
        print(restore(ws, args.to)["message"])


def _who(args: argparse.Namespace) -> str:
    import getpass

    return args.by or getpass.getuser()


def trust(ws: Workspace, args: argparse.Namespace) -> None:
    from poisongate.store.lock import workspace_lock
    from poisongate.store.review import trust as trust_run

    with workspace_lock(ws, configuration.lock_timeout(ws.params)):
        entry = trust_run(ws, args.run, _who(args), args.why)
    print(f"run {entry['run_id']}: {entry['rows']} rows are gate reference from the next run on "
          f"(commit {entry['git_commit'][:10]})")


def quarantine(ws: Workspace, args: argparse.Namespace) -> None:
    from poisongate.store import review
    from poisongate.store.lock import workspace_lock

    if args.action == "list":
        for row in review.quarantine_list(ws):
            kinds = ", ".join(f"{k} {v}" for k, v in row["reasons"].items()) or "-"
            print(f"{row['run_id']}  {row['rows']} rows  released {row['released']}  reasons: {kinds}")
        return
    if not args.run or (args.ids is None) == (not args.all_unflagged):
        raise PoisongateError("quarantine release: name the run and either --ids FILE or --all-unflagged")
    config = configuration.load(ws.params)
    with workspace_lock(ws, config.data.lock_timeout_s):
        entry = review.release(ws, config.data, args.run, args.ids, args.all_unflagged, _who(args), args.why)
    print(f"released {len(entry['ids'])} rows of run {entry['run_id']} into the training set "
          f"(commit {entry['git_commit'][:10]}); the next run trains on them")


def run_one_stage(ws: Workspace, name: str) -> None:
    from poisongate.store.lock import workspace_lock
    from poisongate.store.record import verdict
    from tasks import run_stage

    config = configuration.load(ws.params)
    with workspace_lock(ws, config.data.lock_timeout_s):
        summary = run_stage(ws, name, config)
    if summary.get("passed") is False:
        raise PoisongateError(verdict({name: summary})[1])


def stage(ws: Workspace, args: argparse.Namespace) -> None:
    run_one_stage(ws, args.name)


def expectations(ws: Workspace, args: argparse.Namespace) -> None:
    run_one_stage(ws, "expectations")  # `expectations build`: the only action


def _parser() -> argparse.ArgumentParser:
    from poisongate import STAGES
    from poisongate.attacks import ATTACKS

    parser = argparse.ArgumentParser(prog="poisongate", description=__doc__)
    parser.add_argument("--workspace", default=".", help="the DVC project to work in (default: here)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any failure")
    parser.add_argument("--verbose", action="store_true", help="show Prefect's own log lines (task states) too")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the gated retraining flow on the source in params.yaml")
    p.add_argument("--simulate", metavar="ATTACK", choices=sorted(ATTACKS), help="poison the incoming batch first")
    p.add_argument("--rate", type=float, default=0.2, help="share of rows the simulated attack poisons (default 0.2)")
    p.add_argument("--batch", type=int,
                   help="which incoming batch of the embedded default to ingest (default: the next one not yet in "
                        "the training set)")
    p.add_argument("--retrain-only", action="store_true",
                   help="train, cross-validate and promote on the dataset in the workspace (e.g. after a rollback)")

    p = sub.add_parser("history", help="list every dataset and model version with its decision and metrics")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    sub.add_parser("status", help="the champion, the last run and its decision, the next scheduled run (when "
                   "PREFECT_API_URL names a server)")

    p = sub.add_parser("monitor", help="the serving model's output distribution on the golden holdout over the last "
                       "runs (predicted-class shares, confidence)")
    p.add_argument("--last", type=int, default=20, help="how many runs (default 20)")

    p = sub.add_parser("report", help="a run's report: its markdown, or one self-contained HTML page (--html)")
    p.add_argument("run", help="a run id (or prefix) or commit from `poisongate history`")
    p.add_argument("--html", action="store_true", help="write the HTML page (default: reports/html/<run_id>.html)")
    p.add_argument("--out", help="where to write the HTML page")

    p = sub.add_parser("rollback",
                       help="restore the last clean dataset (or --to VERSION) and the champion of that time")
    p.add_argument("--to", metavar="VERSION", help="a run id or git commit (prefix) from `poisongate history`")

    p = sub.add_parser("trust", help="make a promoted run's accepted rows part of the gates' reference (recorded)")
    p.add_argument("run", help="a run id from `poisongate history`")
    p.add_argument("--why", required=True, help="why these rows are trusted (recorded)")
    p.add_argument("--by", help="who vouches for them (default: the user name)")

    p = sub.add_parser("quarantine", help="review quarantined rows: list them, or release rows into the training set")
    p.add_argument("action", choices=["list", "release"])
    p.add_argument("run", nargs="?", help="release: the run whose quarantine holds the rows")
    p.add_argument("--ids", type=Path, metavar="FILE", help="release: the ids to release, one per line")
    p.add_argument("--all-unflagged", action="store_true",
                   help="release: every row no detector flagged (its batch was refused whole)")
    p.add_argument("--why", default="", help="release: why these rows are vouched for (recorded)")
    p.add_argument("--by", help="who vouches for them (default: the user name)")

    p = sub.add_parser("init", help="write a complete workspace (params.yaml, dvc.yaml, prefect.yaml, git + DVC "
                       "with a remote); without data flags, for the embedded default data")
    p.add_argument("dir", nargs="?", help="the workspace directory (default: --workspace)")
    p.add_argument("--source", help="your incoming batch file (CSV, Parquet or npz): data.source")
    p.add_argument("--reference", help="your trusted reference file: data.reference")
    p.add_argument("--holdout", help="your golden holdout file: data.holdout")
    p.add_argument("--label-column", dest="label_column", help="the label column: data.label_column")
    p.add_argument("--id-column", dest="id_column", help="the row id column: data.id_column")
    p.add_argument("--remote", help="DVC remote: a directory (kept relative to the workspace) or any DVC URL such "
                   "as s3://bucket/path (default: <workspace>/.dvc-remote)")

    p = sub.add_parser("stage", help="run one stage without Prefect (what dvc.yaml calls)")
    p.add_argument("name", choices=STAGES)

    p = sub.add_parser("redteam", help="attack x rate x seed matrix, gates on and off (params.yaml `redteam`)")
    p.add_argument("--attacks", nargs="+", choices=sorted(ATTACKS), help="default: redteam.attacks")
    p.add_argument("--rates", nargs="+", type=float, help="poisoned shares (default: redteam.rates)")
    p.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: redteam.seeds)")
    p.add_argument("--out", help="output directory (default: redteam.out)")
    p.add_argument("--nights", type=int, help="campaigns instead: each attack spread over N nights at each rate "
                   "per night, through the loop (accumulation, cross-night checks, promotion)")

    p = sub.add_parser("expectations", help="Great Expectations suite")
    p.add_argument("action", choices=["build"], help="derive expectations/suite.json from the reference")
    return parser


COMMANDS: dict[str, Callable[[Workspace, argparse.Namespace], None]] = {
    "init": init, "run": run, "redteam": redteam, "history": history, "status": status, "monitor": monitor,
    "report": report,
    "rollback": rollback, "trust": trust, "quarantine": quarantine, "stage": stage, "expectations": expectations,
}


def main(argv: list[str] | None = None) -> int:
    import logging

    args = _parser().parse_args(argv)
    quiet = not (args.verbose or args.debug)
    if quiet:  # one line per stage (poisongate.console), not Prefect's per-task lines
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # GX sets this logger to INFO when imported: a filter holds whatever its level becomes.
        gx = logging.getLogger("great_expectations.data_context.types.base")
        gx.addFilter(lambda record: record.levelno >= logging.WARNING)
    stage_lines = logging.getLogger("poisongate.console")  # --verbose: Prefect's log shows these lines already
    if quiet and not stage_lines.handlers:
        stage_lines.addHandler(logging.StreamHandler(sys.stdout))
        stage_lines.setLevel(logging.INFO)
        stage_lines.propagate = False
    if not args.debug:
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(HideUserTracebacks(quiet))
    try:
        COMMANDS[args.command](Workspace(args.workspace), args)
    except PoisongateError as e:
        if args.debug:
            raise
        print(f"poisongate: {e}", file=sys.stderr)
        return e.exit_status
    except ModuleNotFoundError as e:
        if e.name not in ("tasks", "flows"):
            raise
        print(f"poisongate: {args.command} needs the stages and flows of a poisongate checkout (tasks/, flows/); "
              "run it from a clone: `python3 -m uv run --locked poisongate ...`", file=sys.stderr)
        return 1
    except Exception as e:
        line = machine_error(e)
        if line is None or args.debug:
            raise
        print(f"poisongate: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
