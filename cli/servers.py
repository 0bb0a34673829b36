"""`steward servers list|show|create|modify|delete`, and the lookup of a server by id or name
that every command naming a server uses."""
import argparse
import os

from cli.api import ApiError
from cli.arguments import UsageError, filters, matching, read_input
from cli.output import as_json, record, table
from shared.components import COMPONENTS

SERVER_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("requests", lambda r: f"{r['requests']} ({r['requests_status']})"),
    ("dns", lambda r: r["versions"].get("dns")),
    ("monitor", lambda r: r["versions"].get("monitor")),
    ("dhcp", lambda r: r["versions"].get("dhcp")),
    ("state", "state"),
]



def _server_body(args, creating):
    body = {}
    for field in ("name", "address", "os", "ssh_port", "ssh_user", "monitoring_api_ip", "runtime", "server_user"):
        value = getattr(args, field, None)
        if value is not None:
            body[field] = value
    if args.components is not None:
        body["components"] = [c for c in args.components.split(",") if c]
    if args.ssh_password_file:
        body["ssh_password"] = read_input(args.ssh_password_file)
    elif os.environ.get("STEWARD_SSH_PASSWORD") and creating:
        body["ssh_password"] = os.environ["STEWARD_SSH_PASSWORD"]
    if args.ssh_key_file:
        body["ssh_private_key"] = read_input(args.ssh_key_file)
    return body


def find_server(api, ref):
    """A server by id, or by its exact name (any case)."""
    if ref.isdigit():
        return api.get(f"/servers/{ref}")
    page = api.get("/servers", search=ref, per_page=500)
    matches = [row for row in page["items"] if row["name"].lower() == ref.lower()]
    if not matches:
        raise ApiError(404, {"error": "server_not_found", "message": f"no server named {ref}"})
    return api.get(f"/servers/{matches[0]['id']}")


# What the API filters the whole fleet on; the list's other columns filter the page fetched.
API_FILTERS = ("state", "os", "runtime")
ROW_FILTERS = ("id", "name", "address", "requests", "requests_status")


def servers_list(api, args):
    params = {"search": args.search, "sort": args.sort, "page": args.page, "per_page": args.per_page}
    chosen = filters(args.filter_by, API_FILTERS + ROW_FILTERS)
    params.update({k: v for k, v in chosen.items() if k in API_FILTERS})
    page = api.get("/servers", **params)
    here = {k: v for k, v in chosen.items() if k not in API_FILTERS}
    if here:
        page = dict(page, items=matching(page["items"], here))
    if args.json:
        return as_json(page)
    table(page["items"], SERVER_COLUMNS)
    shown = len(page["items"])
    print(f"\n{shown} of {page['total']} server(s), page {page['page']}"
          + (f" (filtered here by {', '.join(here)})" if here else ""))


def servers_show(api, args):
    server = find_server(api, args.server)
    if args.json:
        return as_json(server)
    record({k: v for k, v in server.items() if k != "components"})
    if server["components"]:
        print()
        table(server["components"], [("component", "name"), ("version", "version"), ("state", "state")])


def servers_create(api, args):
    server = api.create("/servers", _server_body(args, creating=True))
    if args.json:
        return as_json(server)
    print(f"created server {server['name']} (id {server['id']}, server user {server['server_user']})")


def servers_modify(api, args):
    server = find_server(api, args.server)
    body = _server_body(args, creating=False)
    if args.new_name:
        body["name"] = args.new_name
    if not body:
        raise UsageError("nothing to change: give at least one option")
    server = api.patch(f"/servers/{server['id']}", body)
    if args.json:
        return as_json(server)
    print(f"modified server {server['name']} (id {server['id']})")


def servers_delete(api, args):
    server = find_server(api, args.server)
    report = api.delete(f"/servers/{server['id']}")  # a cleanup report when something had been installed
    if args.json:
        return as_json({"deleted": server["id"], "cleanup": (report or {}).get("cleanup")})
    print(f"deleted server {server['name']} (id {server['id']})")
    for problem in (report or {}).get("cleanup", {}).get("problems", []):
        print(f"  not done on the server: {problem}")


def servers_inspect(api, args):
    server = find_server(api, args.server)
    seen = api.get(f"/servers/{server['id']}/inspection")
    if args.json:
        return as_json(seen)
    stored, reported = seen["stored"], seen["reported"]
    record({"server": f"{seen['name']} (id {seen['server_id']})", "stored state": stored["state"],
            "liveness": reported["state"], "last heartbeat": reported["last_heartbeat_at"],
            "agent": reported["agent_version"], "agent last seen": stored["agent_last_seen_at"],
            "broker user": "present" if seen["broker_user_present"] else "missing"})
    names = sorted({c["name"] for c in stored["components"]} | set(reported["versions"]))
    stored_by_name = {c["name"]: c for c in stored["components"]}
    print()
    table([{"name": n, "state": stored_by_name.get(n, {}).get("state"), "stored": stored_by_name.get(n, {}).get("version"),
            "reported": reported["versions"].get(n)} for n in names],
          [("component", "name"), ("stored state", "state"), ("stored version", "stored"),
           ("reported version", "reported")])
    print()
    for line in seen["disagreements"] or ["stored and reported agree"]:
        print(f"* {line}")


def _server_options(parser, creating):
    required = creating
    parser.add_argument("--name", required=required, help="display name" if creating else argparse.SUPPRESS)
    parser.add_argument("--address", required=required, help="FQDN or IP address")
    parser.add_argument("--os", required=required, choices=["ubuntu", "centos"])
    parser.add_argument("--ssh-port", type=int)
    parser.add_argument("--ssh-user")
    parser.add_argument("--ssh-password-file", metavar="PATH", help="read the SSH password from PATH (- for stdin)")
    parser.add_argument("--ssh-key-file", metavar="PATH", help="read the SSH private key from PATH (- for stdin)")
    parser.add_argument("--components", metavar="LIST", help=f"comma separated: {','.join(COMPONENTS)}")
    parser.add_argument("--monitoring-api-ip")
    parser.add_argument("--runtime", choices=["docker", "process"])
    parser.add_argument("--server-user", help="existing user to own the server")


def add_commands(groups):
    """Adds `steward servers ...` to the parser; returns its subcommands, which other modules add to."""
    servers = groups.add_parser("servers", help="managed servers").add_subparsers(dest="command", required=True)
    p = servers.add_parser("list", help="list servers")
    p.add_argument("--search", help="full or partial name")
    p.add_argument("--sort", choices=["name", "-name"])
    p.add_argument("--filter-by", action="append", metavar="KEY=VALUE",
                   help=f"e.g. state=down, os=centos, runtime=process; keys: {', '.join(API_FILTERS + ROW_FILTERS)}")
    p.add_argument("--page", type=int)
    p.add_argument("--per-page", type=int)
    p.set_defaults(func=servers_list)
    p = servers.add_parser("show", help="show one server")
    p.add_argument("server", help="id or name")
    p.set_defaults(func=servers_show)
    p = servers.add_parser("create", help="register a server")
    _server_options(p, creating=True)
    p.set_defaults(func=servers_create)
    p = servers.add_parser("modify", help="change a server")
    p.add_argument("server", help="id or name")
    p.add_argument("--new-name")
    _server_options(p, creating=False)
    p.set_defaults(func=servers_modify)
    p = servers.add_parser("inspect", help="the stored record beside what the server reports")
    p.add_argument("server", help="id or name")
    p.set_defaults(func=servers_inspect)
    p = servers.add_parser("delete", help="delete a server")
    p.add_argument("server", help="id or name")
    p.set_defaults(func=servers_delete)
    return servers
