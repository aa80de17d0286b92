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

    init = sub.add_parser("init", help="make the workspace a git repo + DVC project with a local remote")
    init.add_argument("--remote", help="directory of the DVC remote (default: <workspace>/.dvc-remote)")

    stage = sub.add_parser("stage", help="run one stage without Prefect (what dvc.yaml calls)")
    stage.add_argument("name", choices=list(STAGES))

    expectations = sub.add_parser("expectations", help="Great Expectations suite")
    expectations.add_argument("action", choices=["build"], help="derive expectations/suite.json from the reference")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tasks.config import PoisongateError, Workspace, load_params

    ws = Workspace(args.workspace)
    try:
        if args.command == "init":
            from tasks import versioning

            versioning.init(ws, args.remote)
        elif args.command == "run":
            from flows.retrain import retrain

            attack, rate = (args.simulate, args.rate) if args.simulate else ("none", 0.0)
            retrain(workspace=str(ws.root), attack=attack, rate=rate, batch=args.batch)
        else:
            from tasks.stages import run_stage

            name = "expectations" if args.command == "expectations" else args.name
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
