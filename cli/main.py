"""steward: manage a Steward control plane from the command line.

    steward servers list [--search TEXT] [--sort name|-name] [--filter-by state=running]
    steward servers show|create|modify|delete ...
    steward settings show|set ...
    steward tokens create|list|delete ...
    steward users list|create ...
    steward notifications channels|rules|templates|deliveries ...
    steward versions list|upload, steward servers update|update-log|diagnose, steward rollouts ...
    steward servers install|bundle NAME, steward tasks show TASK_ID [--log]

The API URL comes from --url, $STEWARD_URL or .steward/api-url; the token from
--token, $STEWARD_TOKEN or .steward/admin-token. --json prints raw JSON.
"""
import argparse
import json
import os
import sys

from cli import notifications, provisioning, updates
from cli.api import Api, ApiError, default_token, default_url
from cli.output import as_json, record, table

SERVER_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("requests", lambda r: f"{r['requests']} ({r['requests_status']})"),
    ("dns", lambda r: r["versions"].get("dns")),
    ("monitor", lambda r: r["versions"].get("monitor")),
    ("dhcp", lambda r: r["versions"].get("dhcp")),
    ("state", "state"),
]


class UsageError(Exception):
    pass


def _read_secret(path):
    if path == "-":
        return sys.stdin.read().rstrip("\n")
    try:
        with open(path) as handle:
            return handle.read().rstrip("\n")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _server_body(args, creating):
    body = {}
    for field in ("name", "address", "os", "ssh_port", "ssh_user", "monitoring_api_ip", "runtime", "server_user"):
        value = getattr(args, field, None)
        if value is not None:
            body[field] = value
    if args.components is not None:
        body["components"] = [c for c in args.components.split(",") if c]
    if args.ssh_password_file:
        body["ssh_password"] = _read_secret(args.ssh_password_file)
    elif os.environ.get("STEWARD_SSH_PASSWORD") and creating:
        body["ssh_password"] = os.environ["STEWARD_SSH_PASSWORD"]
    if args.ssh_key_file:
        body["ssh_private_key"] = _read_secret(args.ssh_key_file)
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


def servers_list(api, args):
    params = {"search": args.search, "sort": args.sort, "page": args.page, "per_page": args.per_page}
    for item in args.filter_by or []:
        key, sep, value = item.partition("=")
        if not sep or key not in ("state",):
            raise UsageError(f"--filter-by takes state=VALUE, not {item!r}")
        params[key] = value
    page = api.get("/servers", **params)
    if args.json:
        return as_json(page)
    table(page["items"], SERVER_COLUMNS)
    shown = len(page["items"])
    print(f"\n{shown} of {page['total']} server(s), page {page['page']}")


def servers_show(api, args):
    server = find_server(api, args.server)
    if args.json:
        return as_json(server)
    record({k: v for k, v in server.items() if k != "components"})
    if server["components"]:
        print()
        table(server["components"], [("component", "name"), ("version", "version"), ("state", "state")])


def servers_create(api, args):
    server = api.post("/servers", _server_body(args, creating=True))
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


def _parse_assignment(text):
    key, sep, raw = text.partition("=")
    section, dot, field = key.partition(".")
    if not sep or not dot or not field:
        raise UsageError(f"expected SECTION.FIELD=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return section, field, value


def settings_show(api, args):
    settings = api.get("/settings")
    if args.section:
        if args.section not in settings:
            raise UsageError(f"no settings section {args.section}; sections: {', '.join(settings)}")
        settings = {args.section: settings[args.section]}
    if args.json:
        return as_json(settings)
    for section, values in settings.items():
        print(f"[{section}]")
        record(values)
        print()


def settings_set(api, args):
    patch = {}
    for assignment in args.assignments:
        section, field, value = _parse_assignment(assignment)
        if field.startswith("repository_tokens."):
            patch.setdefault(section, {}).setdefault("repository_tokens", {})[field.split(".", 1)[1]] = value
        else:
            patch.setdefault(section, {})[field] = value
    settings = api.patch("/settings", patch)
    if args.json:
        return as_json(settings)
    print(f"saved: {', '.join(sorted(patch))}")


def settings_test_rabbitmq(api, args):
    result = api.post("/settings/rabbitmq/test", {})
    if args.json:
        as_json(result)
    else:
        print(("ok: " if result["ok"] else "failed: ") + result["message"])
    return 0 if result["ok"] else 1


def tokens_create(api, args):
    body = {"name": args.name}
    if args.user:
        body["user"] = args.user
    if args.expires_in_days:
        body["expires_in_days"] = args.expires_in_days
    token = api.post("/tokens", body)
    if args.json:
        return as_json(token)
    print(token["token"])
    print(f"token {token['id']} for {token['user']}: shown once, keep it now", file=sys.stderr)


def tokens_list(api, args):
    tokens = api.get("/tokens", user=args.user)
    if args.json:
        return as_json(tokens)
    table(tokens, [("id", "id"), ("name", "name"), ("user", "user"), ("prefix", "prefix"), ("created", "created_at"),
                   ("expires", "expires_at"), ("last used", "last_used_at")])


def tokens_delete(api, args):
    api.delete(f"/tokens/{args.id}")
    print(f"revoked token {args.id}")


def users_list(api, args):
    users = api.get("/users")
    if args.json:
        return as_json(users)
    table(users, [("id", "id"), ("name", "name"), ("role", "role"), ("groups", "groups")])


def users_create(api, args):
    body = {"name": args.name, "role": args.role}
    if args.groups:
        body["groups"] = args.groups.split(",")
    user = api.post("/users", body)
    if args.json:
        return as_json(user)
    print(f"created user {user['name']} (id {user['id']}, {user['role']})")


def _server_options(parser, creating):
    required = creating
    parser.add_argument("--name", required=required, help="display name" if creating else argparse.SUPPRESS)
    parser.add_argument("--address", required=required, help="FQDN or IP address")
    parser.add_argument("--os", required=required, choices=["ubuntu", "centos"])
    parser.add_argument("--ssh-port", type=int)
    parser.add_argument("--ssh-user")
    parser.add_argument("--ssh-password-file", metavar="PATH", help="read the SSH password from PATH (- for stdin)")
    parser.add_argument("--ssh-key-file", metavar="PATH", help="read the SSH private key from PATH (- for stdin)")
    parser.add_argument("--components", metavar="LIST", help="comma separated: dns,dhcp,backup,monitor")
    parser.add_argument("--monitoring-api-ip")
    parser.add_argument("--runtime", choices=["docker", "process"])
    parser.add_argument("--server-user", help="existing user to own the server")


def build_parser():
    parser = argparse.ArgumentParser(prog="steward", description="Manage a Steward control plane.")
    parser.add_argument("--url", default=None, help="API base URL (default: $STEWARD_URL, .steward/api-url)")
    parser.add_argument("--token", default=None, help="API token (default: $STEWARD_TOKEN, .steward/admin-token)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{servers,settings,tokens,users,versions,rollouts,notifications,tasks}")

    servers = groups.add_parser("servers", help="managed servers").add_subparsers(dest="command", required=True)
    p = servers.add_parser("list", help="list servers")
    p.add_argument("--search", help="full or partial name")
    p.add_argument("--sort", choices=["name", "-name"])
    p.add_argument("--filter-by", action="append", metavar="KEY=VALUE", help="e.g. state=running")
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
    p = servers.add_parser("delete", help="delete a server")
    p.add_argument("server", help="id or name")
    p.set_defaults(func=servers_delete)

    settings = groups.add_parser("settings", help="admin settings").add_subparsers(dest="command", required=True)
    p = settings.add_parser("show", help="show settings")
    p.add_argument("section", nargs="?", help="monitoring, update, rabbitmq or backup")
    p.set_defaults(func=settings_show)
    p = settings.add_parser("set", help="change settings: SECTION.FIELD=VALUE ...")
    p.add_argument("assignments", nargs="+", metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=settings_set)
    p = settings.add_parser("test-rabbitmq", help="try the saved RabbitMQ credentials")
    p.set_defaults(func=settings_test_rabbitmq)

    tokens = groups.add_parser("tokens", help="API tokens").add_subparsers(dest="command", required=True)
    p = tokens.add_parser("create", help="create a token (printed once)")
    p.add_argument("--name", default="cli")
    p.add_argument("--user", help="whose token (admins)")
    p.add_argument("--expires-in-days", type=int)
    p.set_defaults(func=tokens_create)
    p = tokens.add_parser("list", help="list tokens")
    p.add_argument("--user")
    p.set_defaults(func=tokens_list)
    p = tokens.add_parser("delete", help="revoke a token")
    p.add_argument("id", type=int)
    p.set_defaults(func=tokens_delete)

    users = groups.add_parser("users", help="users (admins)").add_subparsers(dest="command", required=True)
    p = users.add_parser("list", help="list users")
    p.set_defaults(func=users_list)
    p = users.add_parser("create", help="create a user")
    p.add_argument("name")
    p.add_argument("--role", default="viewer", choices=["admin", "operator", "viewer"])
    p.add_argument("--groups", help="comma separated")
    p.set_defaults(func=users_create)

    updates.add_commands(groups, servers)
    provisioning.add_commands(groups, servers)
    notifications.add_commands(groups)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    api = Api(args.url or default_url(), args.token or default_token())
    try:
        return args.func(api, args) or 0
    except ApiError as exc:
        print(exc.describe(), file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
