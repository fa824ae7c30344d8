"""The `studio` command: run, scale out and try DeepSeek Studio.

    studio up                 the whole studio on this machine
    studio web / worker       one server of a scale-out deployment
    studio init               migrate, create the first admin and the demo project
    studio demo               train a CNN through the REST API, end to end
    studio tune ...           start a hyper-parameter study and follow it
    studio token USERNAME     print a user's API token
    studio migrate | createsuperuser | manage ...   Django's management commands

A failure ends with one line on stderr, "studio: <what is wrong>", and exit code 1.
"""

import argparse
import os
import sys

from django.core.management.base import CommandError

# Subcommands whose arguments go to Django's manage.py unchanged.
PASSTHROUGH = ("manage", "migrate", "createsuperuser")


def port_number(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {raw!r}: expected a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: expected a number from 1 to 65535")
    return port


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {raw!r}: expected an integer of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid number {value}: expected an integer of at least 1")
    return value


def positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {raw!r}: expected seconds, e.g. 300") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid duration {raw}: expected more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio", description="DeepSeek Studio: train PyTorch models together in the browser.",
        epilog="Data folder: STUDIO_HOME (default ./var). See README.md for the environment variables.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the whole studio on this machine",
                             description="Run the web server, a worker, Redis (unless REDIS_URL is set) and the "
                                         "MLflow UI as one process tree; Ctrl-C stops them all.")
    up.add_argument("--host", default="127.0.0.1", help="address the web server listens on (default: 127.0.0.1)")
    up.add_argument("--port", type=port_number, default=8000, help="web server port (default: 8000)")
    up.add_argument("--mlflow-port", type=port_number, default=None,
                    help="MLflow UI port on 127.0.0.1 (default: --port + 1)")
    up.add_argument("--no-mlflow", action="store_true", help="do not start the MLflow UI")
    up.add_argument("--concurrency", type=positive_int, default=1,
                    help="runs the worker trains at once (default: 1)")

    web = commands.add_parser("web", help="run only the web server (needs REDIS_URL)",
                              description="Serve the web UI, API and websockets with Daphne, joined to the other "
                                          "servers through REDIS_URL and DATABASE_URL.")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    web.add_argument("--port", type=port_number, default=8000, help="port to listen on (default: 8000)")

    worker = commands.add_parser("worker", help="run only a training worker (needs REDIS_URL)",
                                 description="Run a Celery worker that trains the runs queued in REDIS_URL.")
    worker.add_argument("--queues", default="cpu",
                        help="comma-separated queues to take runs from: cpu, gpu (default: cpu)")
    worker.add_argument("--concurrency", type=positive_int, default=1,
                        help="runs this worker trains at once (default: 1)")
    worker.add_argument("--beat", action="store_true",
                        help="also run the schedule that re-queues runs of dead workers (on one worker only)")

    commands.add_parser("init", help="migrate, and create the first admin and the demo project",
                        description="Prepare the database as `studio up` does before it starts servers: apply "
                                    "migrations, collect static files, create the superuser 'admin' (printing "
                                    "its password) if there is no user, and the demo project.")

    token = commands.add_parser("token", help="print a user's API token, creating it if needed")
    token.add_argument("username", metavar="USERNAME")

    demo = commands.add_parser("demo", help="train a CNN on digits through the REST API",
                               description="Upload scikit-learn's digits to the demo project, train a CNN, follow "
                                           "it to the end and check its validation accuracy.")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the studio (default: http://127.0.0.1:8000)")
    demo.add_argument("--token", default=os.environ.get("STUDIO_TOKEN", ""),
                      help="API token (default: $STUDIO_TOKEN; on this machine, the admin's token)")
    demo.add_argument("--timeout", type=positive_seconds, default=600.0,
                      help="seconds to wait for the run to finish (default: 600)")

    tune = commands.add_parser(
        "tune", help="start a hyper-parameter study on a running studio and follow it",
        description="Start an Optuna study through the REST API: every trial trains as a run on the workers. "
                    "Prints a progress line until the study ends, then the best trial.",
        epilog="Example: studio tune --dataset digits --space space.json --trials 30 --parallel 2 --sampler tpe")
    tune.add_argument("--dataset", required=True, help="dataset id, or name (with --project when names repeat)")
    tune.add_argument("--project", help="project id or name, to find the dataset by name")
    tune.add_argument("--space", required=True,
                      help="search space: a JSON file or inline JSON, e.g. "
                           "'{\"lr\": {\"type\": \"float\", \"low\": 1e-4, \"high\": 0.1, \"log\": true}}'")
    tune.add_argument("--config", help="base run config every trial starts from: a JSON file or inline JSON")
    tune.add_argument("--objective", action="append", default=[], metavar="METRIC[:DIRECTION]",
                      help="what to optimise, e.g. val/accuracy or model/latency_ms:minimize; repeat for a "
                           "multi-objective study (default: val/accuracy, or val/rmse for regression)")
    tune.add_argument("--trials", type=positive_int, default=20, help="trial budget (default: 20)")
    tune.add_argument("--parallel", type=positive_int, default=2, help="trials that run at once (default: 2)")
    tune.add_argument("--sampler", default="tpe", choices=["tpe", "gp", "cmaes", "random", "qmc", "nsga2"],
                      help="default: tpe")
    tune.add_argument("--pruner", default="median", choices=["median", "hyperband", "sha", "none"],
                      help="default: median")
    tune.add_argument("--budget", type=positive_seconds, help="time budget in seconds: no trial starts after it")
    tune.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    tune.add_argument("--name", help="the study's name")
    tune.add_argument("--promote", action="store_true", help="train the best trial as a run at the end")
    tune.add_argument("--promote-epochs", type=positive_int, help="epochs of the promoted run")
    tune.add_argument("--no-wait", action="store_true", help="start the study and exit")
    tune.add_argument("--timeout", type=positive_seconds, help="stop following after this many seconds")
    tune.add_argument("--url", default="http://127.0.0.1:8000", help="the studio (default: http://127.0.0.1:8000)")
    tune.add_argument("--token", default=os.environ.get("STUDIO_TOKEN", ""),
                      help="API token (default: $STUDIO_TOKEN; on this machine, the admin's token)")

    commands.add_parser("migrate", help="apply database migrations (Django's migrate)", add_help=False)
    commands.add_parser("createsuperuser", help="create a superuser (Django's createsuperuser)", add_help=False)
    commands.add_parser("manage", help="run any Django management command, e.g. studio manage shell",
                        add_help=False)
    return parser


def run_passthrough(command: str, args: list[str]) -> int:
    """Run a Django management command; `studio manage X ...` equals `manage.py X ...`."""
    from django.core.management import execute_from_command_line

    from studio import preflight

    preflight.setup_django()
    if command != "manage":
        # Commands such as compilemessages need no database, so only these two check it.
        preflight.check_database()
    argv = ["studio manage", *args] if command == "manage" else ["studio", command, *args]
    if command == "manage" and not args:
        argv.append("help")
    execute_from_command_line(argv)
    return 0


def run(argv: list[str]) -> int:
    if argv and argv[0] in PASSTHROUGH:
        # argparse cannot pass options such as --noinput through untouched.
        return run_passthrough(argv[0], argv[1:])

    args = build_parser().parse_args(argv)
    from studio import up

    if args.command == "up":
        options = up.UpOptions(host=args.host, port=args.port, mlflow_port=args.mlflow_port,
                               mlflow=not args.no_mlflow, concurrency=args.concurrency)
        return up.run_up(options)
    if args.command == "web":
        return up.run_web(args.host, args.port)
    if args.command == "worker":
        return up.run_worker(up.parse_queues(args.queues), args.concurrency, args.beat)
    if args.command == "init":
        return up.run_init()
    if args.command == "token":
        return print_token(args.username)
    if args.command == "demo":
        from studio.demo import run_demo

        return run_demo(args.url, args.token, args.timeout)
    if args.command == "tune":
        from studio.tune import run_tune

        return run_tune(args)
    raise AssertionError(f"unhandled command {args.command}")


def print_token(username: str) -> int:
    from studio import bootstrap, preflight

    preflight.setup_django()
    preflight.check_database()
    print(bootstrap.api_token(username))
    return 0


def main(argv: list[str] | None = None) -> None:
    from studio.supervisor import ChildExited

    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except (CommandError, ChildExited) as exc:
        print(f"studio: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr, flush=True)
        code = 130
    sys.exit(code)
