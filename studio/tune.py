"""`studio tune`: start a hyper-parameter study on a running studio and follow it with a progress bar.

    studio tune --dataset digits --space space.json --trials 30 --parallel 2 --sampler tpe

It talks to the studio over the REST API only (on this machine it may read
the admin's token from the database, as `studio demo` does), so it works
against a studio on another machine with --url and --token.
"""

import json
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from django.core.management.base import CommandError

from studio.demo import ApiClient, local_token, results

ENDED = {"finished", "stopped", "failed"}
POLL_SECONDS = 1.0
BAR_WIDTH = 24


def read_json_option(option: str, raw: str) -> dict:
    """Parse an option given as a JSON file path or as inline JSON; errors name the option, file and line."""
    text, source = raw, "the inline JSON"
    if not raw.lstrip().startswith("{"):
        path = Path(raw)
        if path.is_dir():
            raise CommandError(f"{option} {raw}: is a folder; give a JSON file or inline JSON such as '{{...}}'")
        if not path.is_file():
            raise CommandError(f"{option} {raw}: no such file (give a JSON file or inline JSON such as '{{...}}')")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option}: {source}, line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise CommandError(f"{option}: {source} must hold a JSON object, not {type(value).__name__}")
    return value


def parse_objective(raw: str) -> dict:
    """`val/accuracy` or `model/latency_ms:minimize` → {"metric": ..., "direction": ...}."""
    metric, _, direction = raw.partition(":")
    objective = {"metric": metric.strip()}
    if direction:
        objective["direction"] = direction.strip()
    return objective


def find_dataset(api: ApiClient, raw: str, project: str | None) -> dict:
    """Find a dataset by id, or by name within --project when several projects have one of that name."""
    if raw.isdigit():
        return api.get(f"/api/v1/datasets/{raw}/")
    params = {"limit": 1000}
    if project:
        params["project"] = find_project_id(api, project)
    matches = [d for d in results(api.get("/api/v1/datasets/", **params)) if d["name"] == raw]
    if not matches:
        raise CommandError(f"no dataset named {raw!r} is visible to this token"
                           + (f" in project {project!r}" if project else ""))
    if len(matches) > 1:
        projects = ", ".join(sorted({str(d["project"]) for d in matches}))
        raise CommandError(f"{len(matches)} datasets are named {raw!r} (projects {projects}); pass --project "
                           "or the dataset's id")
    return matches[0]


def find_project_id(api: ApiClient, raw: str) -> int:
    if raw.isdigit():
        return int(raw)
    for project in results(api.get("/api/v1/projects/", name=raw)):
        if project["name"] == raw:
            return project["id"]
    raise CommandError(f"no project named {raw!r} is visible to this token")


def format_seconds(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_line(study: dict) -> str:
    done, total = study["trials_finished"], study["n_trials"]
    filled = round(BAR_WIDTH * done / total) if total else 0
    running = study["trials_started"] - done
    best = "-" if study["best_value"] is None else f"{study['best_value']:.4g} (trial {study['best_trial_number']})"
    metric = study["objectives"][0]["metric"]
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} trials, {running} running, "
            f"best {metric} {best}, ETA {format_seconds(study['eta_seconds'])}")


def follow(api: ApiClient, study: dict, timeout: float | None) -> dict:
    """Redraw one progress line until the study ends; on a terminal it rewrites itself in place."""
    interactive = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    last_counts = None
    while True:
        line = progress_line(study)
        counts = (study["trials_started"], study["trials_finished"], study["best_value"], study["state"])
        if interactive and line != last:
            print("\r" + line[:width - 1].ljust(min(len(last or ""), width - 1)), end="", flush=True)
        elif not interactive and counts != last_counts:
            # In a log, a line per trial started or finished; the ETA alone changes every second.
            print(line, flush=True)
        last, last_counts = line, counts
        if study["state"] in ENDED:
            break
        if deadline and time.monotonic() > deadline:
            raise CommandError(f"study {study['id']} is still {study['state']} after {timeout:.0f} s; it goes on "
                               f"at {study['url']}")
        time.sleep(POLL_SECONDS)
        study = api.get(f"/api/v1/studies/{study['id']}/")
    if interactive:
        print()
    return study


def report(api: ApiClient, study: dict) -> None:
    trials = api.get(f"/api/v1/studies/{study['id']}/trials/")
    counts = {}
    for trial in trials:
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    print(f"Study {study['id']} {study['state']}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if study["error"]:
        print(f"  error: {study['error']}")
    best = next((t for t in trials if t["number"] == study["best_trial_number"]), None)
    if best is None:
        print("  no trial completed")
        return
    if len(study["objectives"]) > 1:
        print(f"  Pareto front: trials {', '.join(str(n) for n in study['pareto_trials'])} (best of each "
              f"objective on its page; below, the best {study['objectives'][0]['metric']})")
    values = ", ".join(f"{o['metric']} {v:.4g}" for o, v in zip(study["objectives"], best["values"], strict=False))
    print(f"  best trial {best['number']}: {values}")
    for name, value in best["params"].items():
        print(f"    {name} = {value}")
    print(f"  run: {best['run_url']}")


def run_tune(args) -> int:
    base_url = args.url.rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise CommandError(f"--url {base_url!r} is not an http:// or https:// address")
    space = read_json_option("--space", args.space)
    base_config = read_json_option("--config", args.config) if args.config else {}
    api = ApiClient(base_url, args.token or local_token(base_url))

    dataset = find_dataset(api, args.dataset, args.project)
    body = {"project": dataset["project"], "dataset": dataset["id"], "name": args.name or "",
            "base_config": base_config, "space": space, "objectives": [parse_objective(o) for o in args.objective],
            "sampler": args.sampler, "pruner": args.pruner, "n_trials": args.trials, "parallel": args.parallel,
            "timeout_seconds": int(args.budget) if args.budget else None, "seed": args.seed}
    study = api.post("/api/v1/studies/", json=body)
    study["url"] = urljoin(base_url + "/", study["url"])
    print(f"Started study {study['id']} ({study['sampler']}, {study['n_trials']} trials, {study['parallel']} at "
          f"once) on {dataset['name']}: {study['url']}", flush=True)
    if args.no_wait:
        return 0
    try:
        study = follow(api, study, args.timeout)
    except KeyboardInterrupt:
        print(f"\nstudio: stopped following; study {study['id']} goes on at {study['url']}. Stop it with "
              f"POST /api/v1/studies/{study['id']}/stop/ or its page.", file=sys.stderr)
        return 130
    report(api, study)
    if args.promote and study["best_trial_number"] is not None:
        run = api.post(f"/api/v1/studies/{study['id']}/promote/",
                       json={"epochs": args.promote_epochs} if args.promote_epochs else {})
        print(f"Promoted trial {study['best_trial_number']} to run {run['id']}: "
              f"{urljoin(base_url + '/', run['url'])}")
    return 0 if study["state"] == "finished" else 1
