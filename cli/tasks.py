"""`steward tasks list|show|log|cancel`: long operations of every kind, a task's state and step log, and
the progress bar that follows one.

    steward tasks list [--server ID] [--kind KIND] [--state STATE] [--page N] [--per-page N]
    steward tasks show TASK_ID [--log]           a task's state, and its step log
    steward tasks log TASK_ID [--no-follow]      its step log, followed until the task ends
    steward tasks cancel TASK_ID                 a queued task at once; a running one at its next safe point
"""
import argparse
import sys
import time

from cli.arguments import filters, matching
from cli.output import as_json, record, table
from shared.tasks import FINISHED, TASK_STATES

BAR_WIDTH = 30


def progress_line(task):
    """`[#########.....]  5/16 upload` for a task."""
    count = task["step_count"] or 1
    # A step counts as done once the next one started, or when the task succeeded.
    done = count if task["state"] == "succeeded" else max(task["step_index"] - 1, 0)
    filled = BAR_WIDTH * done // count
    step = task["current_step"] or task["state"]
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {task['step_index']:>2}/{count} {step:<22} {task['state']}"


def follow(api, task_id, out=None, interval=0.5, sleep=time.sleep):
    """Redraw the bar until the task finishes; returns the finished task."""
    out = out or sys.stdout
    interactive = out.isatty()
    last = None
    while True:
        task = api.get(f"/tasks/{task_id}")
        line = progress_line(task)
        if interactive:
            out.write("\r" + line)
        elif line != last:
            out.write(line + "\n")
        out.flush()
        last = line
        if task["state"] in FINISHED:
            if interactive:
                out.write("\n")
            return task
        sleep(interval)


TASK_COLUMNS = [("id", "id"), ("kind", "kind"), ("server", "server_name"), ("state", "state"),
                ("step", lambda t: f"{t['step_index']}/{t['step_count']}"), ("created", "created_at")]


# What the API filters every task on; the list's other columns filter the page fetched.
API_FILTERS = ("server_id", "kind", "state")
ROW_FILTERS = ("id", "server_name", "requested_by", "current_step")


def tasks_list(api, args):
    params = {"server_id": args.server, "kind": args.kind, "state": args.state, "page": args.page,
              "per_page": args.per_page}
    chosen = filters(args.filter_by, API_FILTERS + ROW_FILTERS)
    params.update({k: v for k, v in chosen.items() if k in API_FILTERS})
    page = api.get("/tasks", **params)
    here = {k: v for k, v in chosen.items() if k not in API_FILTERS}
    if here:
        page = dict(page, items=matching(page["items"], here))
    if args.json:
        return as_json(page)
    table(page["items"], TASK_COLUMNS)
    print(f"\n{len(page['items'])} of {page['total']} task(s), page {page['page']}"
          + (f" (filtered here by {', '.join(here)})" if here else ""))
    if page.get("unavailable"):
        print(f"warning: {', '.join(page['unavailable'])} did not answer: its tasks are missing", file=sys.stderr)


def tasks_show(api, args):
    task = api.get(f"/tasks/{args.task}")
    log = api.get(f"/tasks/{args.task}/log") if args.log else None
    if args.json:
        return as_json(dict(task, log=log["steps"]) if log else task)
    record(task)
    if log:
        for step in log["steps"]:
            print()
            _print_step(step)


def _print_step(step):
    ended = f"{step['duration_ms']} ms" if step["duration_ms"] is not None else "running"
    print(f"== {step['position']}. {step['name']}: {step['state']} ({ended})")
    if step["output"]:
        print(step["output"].rstrip())


def tasks_log(api, args):
    """Print each step as it ends until the task ends (with --no-follow: the log as it is now); the exit status
    says whether it succeeded (0 with --no-follow while it runs). --json: the whole log once, at that end."""
    shown = 0
    while True:
        log = api.get(f"/tasks/{args.task}/log")
        done = log["state"] in FINISHED or args.no_follow
        steps = log["steps"] if done else [step for step in log["steps"] if step["state"] != "running"]
        if not args.json:
            for step in steps[shown:]:
                _print_step(step)
        shown = max(shown, len(steps))
        if done:
            break
        time.sleep(args.poll_seconds)
    if args.json:
        as_json(log)
    else:
        print(f"-- task {log['task_id']}: {log['state']}")
    return 0 if log["state"] in ("succeeded", "queued", "running") else 1


def tasks_cancel(api, args):
    task = api.post(f"/tasks/{args.task}/cancel")
    if args.json:
        return as_json(task)
    if task["state"] == "cancelled":
        print(f"{task['kind']} task {task['id']} on {task['server_name']}: cancelled")
    else:
        print(f"{task['kind']} task {task['id']} on {task['server_name']} is {task['state']}: asked to stop at its next "
              f"safe point (step {task['step_index']} of {task['step_count']}); follow it: steward tasks log {task['id']}")


def add_commands(groups):
    """Adds `steward tasks ...` to the parser."""
    tasks = groups.add_parser("tasks", help="long operations: installs, updates, ...").add_subparsers(
        dest="command", required=True)
    p = tasks.add_parser("list", help="tasks of every kind, newest first")
    p.add_argument("--server", type=int, help="one server's tasks (its id)")
    p.add_argument("--kind", help="install, update, ...")
    p.add_argument("--state", choices=TASK_STATES)
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=25)
    p.add_argument("--filter-by", action="append", metavar="KEY=VALUE",
                   help=f"e.g. state=failed, kind=install; keys: {', '.join(API_FILTERS + ROW_FILTERS)}")
    p.set_defaults(func=tasks_list)
    p = tasks.add_parser("show", help="a task's state and progress")
    p.add_argument("task", help="task id")
    p.add_argument("--log", action="store_true", help="also each step's output")
    p.set_defaults(func=tasks_show)
    p = tasks.add_parser("log", help="a task's step log, followed until the task ends")
    p.add_argument("task", help="task id")
    p.add_argument("--no-follow", action="store_true", help="print the log as it is now and return")
    p.add_argument("--poll-seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=tasks_log)
    p = tasks.add_parser("cancel", help="cancel a task: a queued one at once, a running one at its next safe point")
    p.add_argument("task", help="task id")
    p.set_defaults(func=tasks_cancel)
