"""CLI for the updater: `steward versions`, `steward servers update|diagnose`, `steward rollouts`.

    steward versions list [--component dns]
    steward versions upload dns-2.tar.gz [--component dns]
    steward servers update dns-1 [--component dns] [--version 2] [--wait]
    steward servers update-log TASK_ID
    steward servers diagnose dns-1 [--log] [--no-wait]
    steward rollouts create (--servers 1,2,3 | --search dns | --all-running) [--component dns] [--version 2]
                            [--canary 1] [--batch-size 5] [--max-failures 1]
    steward rollouts list | show ID | resume ID | cancel ID
"""
import argparse
import io
import os

from cli.output import as_json, listing, record, table
from cli.servers import find_server
from cli.tasks import follow
from shared.components import INSTALLABLE


def versions_list(api, args):
    catalog = api.get("/versions", component=args.component)
    if args.json:
        return as_json(catalog)
    print(f"update mode: {catalog['mode']}")
    table(catalog["items"], [("component", "component"), ("version", "version"), ("source", "source"),
                             ("stored", "stored"), ("sha256", lambda r: (r["sha256"] or "")[:12]),
                             ("size", "size_bytes"), ("added", "created_at")])


def versions_upload(api, args):
    size = os.path.getsize(args.file)
    with open(args.file, "rb") as handle:  # requests streams an open file; it is never read whole
        version = api.create("/versions", data=handle, params={"component": args.component} if args.component else None,
                             headers={"Content-Type": "application/gzip", "Content-Length": str(size)})
    if args.json:
        return as_json(version)
    print(f"added {version['component']} {version['version']} (sha256 {version['sha256'][:12]}, {version['size_bytes']} bytes)")


def _print_task(task):
    record({k: task[k] for k in ("id", "server_name", "state", "current_step", "error") if task.get(k) is not None}
           | {"progress": f"step {task['step_index']} of {task['step_count']}"})
    for component, result in (task.get("outcome") or {}).items():
        detail = f"{result.get('from')} -> {result.get('to')}"
        print(f"  {component}: {result['outcome']} ({detail}){': ' + result['reason'] if result.get('reason') else ''}")


def servers_update(api, args):
    server = find_server(api, args.server)
    body = {k: v for k, v in (("component", args.component), ("version", args.version)) if v}
    accepted = api.create(f"/servers/{server['id']}/actions/push-update", body)
    if not args.wait:
        if args.json:
            return as_json(accepted)
        print(f"update task {accepted['task_id']} queued for {server['name']}")
        return 0
    follow(api, accepted["task_id"], out=io.StringIO() if args.json else None, interval=args.poll_seconds)
    task = api.get(f"/update-tasks/{accepted['task_id']}")  # with each component's outcome
    if args.json:
        as_json(task)
    else:
        _print_task(task)
    return 0 if task["state"] == "succeeded" else 1


def servers_update_log(api, args):
    print(api.download(f"/update-tasks/{args.task}/log").text, end="")


def servers_diagnose(api, args):
    """Start a diagnostics run (a task), follow it to its end, then show each check's result."""
    server = find_server(api, args.server)
    run = api.create(f"/servers/{server['id']}/actions/diagnostics")
    if args.no_wait:
        return as_json(run) if args.json else print(f"diagnostics task {run['id']} on {server['name']}: {run['state']} "
                                                    f"(follow it: steward tasks log {run['id']})")
    follow(api, run["id"], out=io.StringIO() if args.json else None, interval=args.poll_seconds)
    run = api.get(f"/servers/{server['id']}/diagnostics/{run['id']}")
    if args.json:
        return as_json(run)
    print(f"diagnostics task {run['id']} on {server['name']}: {run['state']}")
    table(run["checks"], [("check", "name"), ("status", "status"), ("message", "message")])
    if args.log:
        print(api.download(f"/servers/{server['id']}/diagnostics/{run['id']}/log").text, end="")
    return 0 if run["state"] == "succeeded" else 1


def _print_rollout(rollout):
    record({k: rollout[k] for k in ("id", "state", "component", "target_version", "canary_size", "batch_size",
                                    "max_failures", "current_wave", "paused_reason")})
    print()
    table(rollout["servers"], [("#", "position"), ("server", "server_name"), ("wave", "wave"), ("state", "state"),
                               ("task", "task_id"), ("message", "message")])


def rollouts_create(api, args):
    body = {"canary_size": args.canary, "batch_size": args.batch_size, "max_failures": args.max_failures}
    if args.servers:
        body["server_ids"] = [find_server(api, ref)["id"] for ref in args.servers.split(",") if ref]
    elif args.search:
        body["search"] = args.search
    else:
        body["all_running"] = True
    for key, value in (("component", args.component), ("version", args.version)):
        if value:
            body[key] = value
    rollout = api.create("/rollouts", body)
    if args.json:
        return as_json(rollout)
    _print_rollout(rollout)


def rollouts_list(api, args):
    rollouts = api.get("/rollouts")
    listing(args, rollouts, [("id", "id"), ("state", "state"), ("component", "component"), ("version", "target_version"),
                             ("servers", lambda r: len(r["servers"])), ("outcomes", "counts"), ("created", "created_at")])


def rollouts_show(api, args):
    rollout = api.get(f"/rollouts/{args.id}")
    return as_json(rollout) if args.json else _print_rollout(rollout)


def rollouts_action(api, args):
    rollout = api.post(f"/rollouts/{args.id}/actions/{args.action}")
    return as_json(rollout) if args.json else _print_rollout(rollout)


def add_commands(groups, servers):
    """Adds the updater's commands to the parser: under `servers`, and the groups `versions` and `rollouts`."""
    p = servers.add_parser("update", help="push an update to a server's components")
    p.add_argument("server", help="id or name")
    p.add_argument("--component", choices=INSTALLABLE)
    p.add_argument("--version", help="target version (default: the newest)")
    p.add_argument("--wait", action="store_true", help="follow the task until it ends")
    p.add_argument("--poll-seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=servers_update)
    p = servers.add_parser("update-log", help="download an update task's step log")
    p.add_argument("task", help="task id")
    p.set_defaults(func=servers_update_log)
    p = servers.add_parser("diagnose", help="run diagnostics on a server (a task: followed to its end)")
    p.add_argument("server", help="id or name")
    p.add_argument("--log", action="store_true", help="also print the run's log")
    p.add_argument("--no-wait", action="store_true", help="only start it; print the task's id")
    p.add_argument("--poll-seconds", type=float, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=servers_diagnose)

    versions = groups.add_parser("versions", help="component versions (the update catalog)")
    versions = versions.add_subparsers(dest="command", required=True)
    p = versions.add_parser("list", help="list versions")
    p.add_argument("--component", choices=INSTALLABLE)
    p.set_defaults(func=versions_list)
    p = versions.add_parser("upload", help="upload an image file (local update mode)")
    p.add_argument("file")
    p.add_argument("--component", choices=INSTALLABLE, help="refuse the file unless it is this component")
    p.set_defaults(func=versions_upload)

    rollouts = groups.add_parser("rollouts", help="update many servers in waves").add_subparsers(dest="command", required=True)
    p = rollouts.add_parser("create", help="start a rollout")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--servers", metavar="LIST", help="comma separated ids or names")
    chosen.add_argument("--search", help="servers whose name contains this")
    chosen.add_argument("--all-running", action="store_true", help="every running server")
    p.add_argument("--component", choices=INSTALLABLE)
    p.add_argument("--version")
    p.add_argument("--canary", type=int, default=1, help="servers in the first wave (default 1)")
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--max-failures", type=int, default=1, help="pause after this many failures (default 1)")
    p.set_defaults(func=rollouts_create)
    p = rollouts.add_parser("list", help="list rollouts")
    p.set_defaults(func=rollouts_list)
    p = rollouts.add_parser("show", help="a rollout and each server's outcome")
    p.add_argument("id", type=int)
    p.set_defaults(func=rollouts_show)
    for action in ("resume", "cancel"):
        p = rollouts.add_parser(action, help=f"{action} a rollout")
        p.add_argument("id", type=int)
        p.set_defaults(func=rollouts_action, action=action)
