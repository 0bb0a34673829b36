"""CLI for the provisioner: `steward servers install|bundle`.

    steward servers install dns-1 [--no-wait]    push install over SSH, with a progress bar
    steward servers bundle dns-1 [-o FILE]       setup-<id>.tar for a manual install
"""
import sys

from cli.output import as_json
from cli.servers import find_server
from cli.tasks import follow


def servers_install(api, args):
    server = find_server(api, args.server)
    task = api.create(f"/servers/{server['id']}/actions/push-install")
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
    server = find_server(api, args.server)
    response = api.download(f"/servers/{server['id']}/bundle")
    path = args.output or f"setup-{server['id']}.tar"
    with open(path, "wb") as handle:
        handle.write(response.content)
    if args.json:
        return as_json({"file": path, "sha256": response.headers.get("X-Content-SHA256"), "size_bytes": len(response.content)})
    print(f"wrote {path} ({len(response.content)} bytes, sha256 {response.headers.get('X-Content-SHA256')})")
    print(f"on the server: tar -xf {path} && cd setup-{server['id']} && sudo bash install_python3.sh "
          "&& sudo python3 pv_install.py")
    print("it holds the server's agent token and broker password: keep it private, delete it after the install")


def add_commands(servers):
    p = servers.add_parser("install", help="install the agent and components over SSH (progress bar)")
    p.add_argument("server", help="id or name")
    p.add_argument("--no-wait", action="store_true", help="print the task id and return")
    p.set_defaults(func=servers_install)
    p = servers.add_parser("bundle", help="download the setup bundle for a manual install")
    p.add_argument("server", help="id or name")
    p.add_argument("-o", "--output", help="file to write (default setup-<id>.tar)")
    p.set_defaults(func=servers_bundle)
