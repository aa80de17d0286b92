"""`poisongate`: the command line. Every user-caused failure ends in one line on stderr and exit status 1."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Prefect gives its temporary API server 20 s to start: too little on a busy machine, and the run is lost.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _parser() -> argparse.ArgumentParser:
    from tasks.attacks import ATTACKS
    from tasks.stages import STAGES

    parser = argparse.ArgumentParser(prog="poisongate", description=__doc__)
    parser.add_argument("--workspace", default=".", help="the DVC project to work in (default: here)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gated retraining flow on the source in params.yaml")
    run.add_argument("--simulate", metavar="ATTACK", choices=sorted(ATTACKS), help="poison the incoming batch first")
    run.add_argument("--rate", type=float, default=0.2, help="share of rows the simulated attack poisons (default 0.2)")
    run.add_argument("--batch", type=int, help="which incoming batch of the embedded default to ingest")
    run.add_argument("--retrain-only", action="store_true", help="train, cross-validate and promote on the dataset in the workspace (e.g. after a rollback)")

    history = sub.add_parser("history", help="list every dataset and model version with its decision and metrics")
    history.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    rollback = sub.add_parser("rollback", help="restore the last clean dataset (or --to VERSION) and the champion of that time")
    rollback.add_argument("--to", metavar="VERSION", help="a run id or git commit (prefix) from `poisongate history`")

    init = sub.add_parser("init", help="make the workspace a git repo + DVC project with a local remote")
    init.add_argument("--remote", help="directory of the DVC remote (default: <workspace>/.dvc-remote)")

    stage = sub.add_parser("stage", help="run one stage without Prefect (what dvc.yaml calls)")
    stage.add_argument("name", choices=list(STAGES))

    redteam = sub.add_parser("redteam", help="attack x rate x seed matrix, gates on and off (params.yaml `redteam`)")
    redteam.add_argument("--attacks", nargs="+", choices=sorted(ATTACKS), help="default: redteam.attacks")
    redteam.add_argument("--rates", nargs="+", type=float, help="poisoned shares (default: redteam.rates)")
    redteam.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: redteam.seeds)")
    redteam.add_argument("--out", help="output directory (default: redteam.out)")

    expectations = sub.add_parser("expectations", help="Great Expectations suite")
    expectations.add_argument("action", choices=["build"], help="derive expectations/suite.json from the reference")
    return parser


def _print_history(ws, as_json: bool) -> None:
    import json

    from tasks.history import history, table
    from tasks.record import champion_id

    rows = history(ws)
    print("\n".join(json.dumps(r) for r in rows) if as_json else table(rows, champion_id(ws)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tasks.config import PoisongateError, Workspace, load_params
    from tasks.lock import workspace_lock

    ws = Workspace(args.workspace)
    try:
        if args.command == "init":
            from tasks import versioning

            versioning.init(ws, args.remote)
        elif args.command == "run":
            from flows.retrain import retrain

            attack, rate = (args.simulate, args.rate) if args.simulate else ("none", 0.0)
            retrain(workspace=str(ws.root), attack=attack, rate=rate, batch=args.batch, retrain_only=args.retrain_only)
        elif args.command == "redteam":
            from flows.redteam import redteam

            seeds = list(range(args.seeds)) if args.seeds else None
            redteam(workspace=str(ws.root), attacks=args.attacks, rates=args.rates, seeds=seeds, out=args.out)
        elif args.command == "history":
            _print_history(ws, args.json)
        elif args.command == "rollback":
            from tasks.rollback import rollback

            with workspace_lock(ws):
                print(rollback(ws, args.to)["message"])
        else:
            from tasks.stages import run_stage

            name = "expectations" if args.command == "expectations" else args.name
            with workspace_lock(ws):
                summary = run_stage(ws, name, load_params(ws))
            if summary.get("passed") is False:
                from tasks.record import verdict

                raise PoisongateError(verdict({name: summary})[1])
    except PoisongateError as e:
        print(f"poisongate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
