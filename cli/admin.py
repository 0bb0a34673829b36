"""`steward settings|tokens|users`: admin settings, API tokens and users."""
import sys

from cli.arguments import UsageError, filters, matching, parse_value, read_input
from cli.output import as_json, listing, record, table


def _parse_assignment(text):
    key, sep, raw = text.partition("=")
    section, dot, field = key.partition(".")
    if not sep or not dot or not field:
        raise UsageError(f"expected SECTION.FIELD=VALUE, got {text!r}")
    return section, field, parse_value(raw)


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
    token = api.create("/tokens", body)
    if args.json:
        return as_json(token)
    print(token["token"])
    print(f"token {token['id']} for {token['user']}: shown once, keep it now", file=sys.stderr)


TOKEN_COLUMNS = [("id", "id"), ("name", "name"), ("user", "user"), ("prefix", "prefix"), ("created", "created_at"),
                 ("expires", "expires_at"), ("last used", "last_used_at")]
USER_COLUMNS = [("id", "id"), ("name", "name"), ("role", "role"), ("groups", "groups")]


def _filtered(args, rows, columns):
    """``rows`` with --filter-by applied (any listed column; the lists are not paged, so it is exact)."""
    return matching(rows, filters(args.filter_by, [key for _, key in columns]))


def tokens_list(api, args):
    tokens = api.get("/tokens", user=args.user)
    listing(args, _filtered(args, tokens, TOKEN_COLUMNS), TOKEN_COLUMNS)


def tokens_delete(api, args):
    api.delete(f"/tokens/{args.id}")
    print(f"revoked token {args.id}")


def users_list(api, args):
    listing(args, _filtered(args, api.get("/users"), USER_COLUMNS), USER_COLUMNS)


def _user_named(api, name):
    for user in api.get("/users"):
        if user["name"] == name or str(user["id"]) == name:
            return user
    raise UsageError(f"no user named {name}")


def users_modify(api, args):
    user = _user_named(api, args.user)
    body = {}
    if args.role:
        body["role"] = args.role
    if args.groups is not None:
        body["groups"] = [g for g in args.groups.split(",") if g]
    if args.password_file:
        body["password"] = read_input(args.password_file)
    if not body:
        raise UsageError("nothing to change: give --role, --groups or --password-file")
    changed = api.patch(f"/users/{user['id']}", body)
    if args.json:
        return as_json(changed)
    print(f"modified user {changed['name']} ({changed['role']}; groups {', '.join(changed['groups']) or 'none'})")


def users_delete(api, args):
    user = _user_named(api, args.user)
    api.delete(f"/users/{user['id']}")
    if args.json:
        return as_json({"deleted": user["id"]})
    print(f"deleted user {user['name']} (id {user['id']})")


def users_create(api, args):
    body = {"name": args.name, "role": args.role}
    if args.groups:
        body["groups"] = args.groups.split(",")
    if args.password_file:
        body["password"] = read_input(args.password_file)
    user = api.create("/users", body)
    if args.json:
        return as_json(user)
    print(f"created user {user['name']} (id {user['id']}, {user['role']})")


def reconcile(api, args):
    result = api.post("/reconcile") if args.fix else api.get("/reconcile")
    if args.json:
        return as_json(result)
    findings = result["findings"]
    columns = [("kind", "kind"), ("server", "server_id"), ("detail", "detail")]
    if args.fix:
        columns.append(("fixed", lambda f: "yes" if f.get("fixed") else f"no: {f.get('problem')}"))
    table(findings, columns)
    verb = "fixed" if args.fix else "found (steward reconcile --fix fixes the safe ones)"
    print(f"\n{len(findings)} disagreement(s) {verb}" if findings else "\nno disagreements")


def add_commands(groups):
    """Adds `steward settings|tokens|users|reconcile ...` to the parser."""
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
    p.add_argument("--filter-by", action="append", metavar="KEY=VALUE",
                   help=f"keys: {', '.join(key for _, key in TOKEN_COLUMNS)}")
    p.set_defaults(func=tokens_list)
    p = tokens.add_parser("delete", help="revoke a token")
    p.add_argument("id", type=int)
    p.set_defaults(func=tokens_delete)

    users = groups.add_parser("users", help="users (admins)").add_subparsers(dest="command", required=True)
    p = users.add_parser("list", help="list users")
    p.add_argument("--filter-by", action="append", metavar="KEY=VALUE",
                   help=f"e.g. role=admin, groups=servers; keys: {', '.join(key for _, key in USER_COLUMNS)}")
    p.set_defaults(func=users_list)
    p = users.add_parser("create", help="create a user")
    p.add_argument("name")
    p.add_argument("--role", default="viewer", choices=["admin", "operator", "viewer"])
    p.add_argument("--groups", help="comma separated")
    p.add_argument("--password-file", metavar="PATH", help="the web console password, read from PATH (- for stdin)")
    p.set_defaults(func=users_create)
    p = users.add_parser("modify", help="change a user's role, groups or console password")
    p.add_argument("user", help="name or id")
    p.add_argument("--role", choices=["admin", "operator", "viewer"])
    p.add_argument("--groups", help="comma separated; the whole new list ('' for none)")
    p.add_argument("--password-file", metavar="PATH", help="a new web console password, read from PATH (- for stdin)")
    p.set_defaults(func=users_modify)
    p = users.add_parser("delete", help="delete a user")
    p.add_argument("user", help="name or id")
    p.set_defaults(func=users_delete)

    p = groups.add_parser("reconcile", help="disagreements between the stored and the reported fleet (admins)")
    p.add_argument("--fix", action="store_true", help="fix the safe ones")
    p.set_defaults(func=reconcile)
