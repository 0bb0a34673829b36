"""CLI for the provisioner: `steward servers install|bundle`, `steward tasks show`.

    steward servers install dns-1 [--no-wait]    push install over SSH, with a progress bar
    steward servers bundle dns-1 [-o FILE]       setup-<id>.tar for a manual install
    steward tasks show TASK_ID [--log]           a task's state, and its step log
"""
import sys
import time

from cli.api import ApiError
from cli.output import as_json, record, table

FINISHED = ("succeeded", "failed", "rolled_back")
BAR_WIDTH = 30


def _find_server(api, ref):
    from cli.main import find_server  # the one lookup by id or name

    return find_server(api, ref)


def progress_line(task):
    """`[#########.....]  5/16 upload` for a task."""
    count = task["step_count"] or 1
    # A step counts as done once the next one started, or when the task succeeded.
    done = count if task["state"] == "succeeded" else max(task["step_index"] - 1, 0)
    filled = BAR_WIDTH * done // count
    step = task["current_step"] or task["state"]
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {task['step_index']:>2}/{count} {step:<22} {task['state']}"


def follow(api, task_id, out=sys.stdout, interval=0.5, sleep=time.sleep):
    """Redraw the bar until the task finishes; returns the finished task."""
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


def servers_install(api, args):
    server = _find_server(api, args.server)
    task = api.post(f"/servers/{server['id']}/actions/push-install")
    if args.no_wait:
        if args.json:
            return as_json(task)
        print(f"install task {task['id']} queued for {server['name']}; follow it with: steward tasks show {task['id']}")
        return 0
    if not args.json:
        print(f"installing {server['name']} ({server['address']}), task {task['id']}")
    task = follow(api, task["id"], out=sys.stderr if args.json else sys.stdout)
    if args.json:
        as_json(task)
    elif task["state"] == "succeeded":
        print(f"{server['name']} installed")
    else:
        print(f"install failed: {task['error']}", file=sys.stderr)
    return 0 if task["state"] == "succeeded" else 1


def servers_bundle(api, args):
    server = _find_server(api, args.server)
    response = api.session.get(f"{api.base}/servers/{server['id']}/bundle", timeout=api.timeout)
    if response.status_code >= 400:
        raise ApiError(response.status_code, response.json())
    path = args.output or f"setup-{server['id']}.tar"
    with open(path, "wb") as handle:
        handle.write(response.content)
    if args.json:
        return as_json({"file": path, "sha256": response.headers.get("X-Content-SHA256"), "size_bytes": len(response.content)})
    print(f"wrote {path} ({len(response.content)} bytes, sha256 {response.headers.get('X-Content-SHA256')})")
    print(f"on the server: tar -xf {path} && cd setup-{server['id']} && sudo bash install_python3.sh "
          "&& sudo python3 pv_install.py")
    print("it holds the server's agent token and broker password: keep it private, delete it after the install")


def tasks_show(api, args):
    task = api.get(f"/tasks/{args.task}")
    log = api.get(f"/tasks/{args.task}/log") if args.log else None
    if args.json:
        return as_json(dict(task, log=log["steps"]) if log else task)
    record(task)
    if log:
        for step in log["steps"]:
            print(f"\n== {step['position']}. {step['name']}: {step['state']} ({step['duration_ms']} ms)")
            if step["output"]:
                print(step["output"])


def add_commands(groups, servers):
    p = servers.add_parser("install", help="install the agent and components over SSH (progress bar)")
    p.add_argument("server", help="id or name")
    p.add_argument("--no-wait", action="store_true", help="print the task id and return")
    p.set_defaults(func=servers_install)
    p = servers.add_parser("bundle", help="download the setup bundle for a manual install")
    p.add_argument("server", help="id or name")
    p.add_argument("-o", "--output", help="file to write (default setup-<id>.tar)")
    p.set_defaults(func=servers_bundle)

    tasks = groups.add_parser("tasks", help="install tasks").add_subparsers(dest="command", required=True)
    p = tasks.add_parser("show", help="a task's state and progress")
    p.add_argument("task", help="task id")
    p.add_argument("--log", action="store_true", help="also each step's output")
    p.set_defaults(func=tasks_show)
