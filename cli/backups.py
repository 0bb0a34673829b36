"""`steward backups ...`: managed backups of the control plane.

    steward backups servers list | add SERVER_ID [--port 8743] [--include-monitoring-raw]
    steward backups policy BACKUP_SERVER [--keep-last N --keep-daily N ...]   (none: show it)
    steward backups schedule BACKUP_SERVER --cron "0 3 * * *" [--kind verify]
    steward backups list [--server BACKUP_SERVER]
    steward backups show ID
    steward backups run --server BACKUP_SERVER [--wait]
    steward backups verify ID [--wait]
    steward backups restore ID --into DATABASE [--wait]
    steward backups restore ID --live [--yes] [--wait]   (replaces the control plane's database: asks first)
    steward backups prune --server BACKUP_SERVER [--dry-run]
    steward backups delete ID

BACKUP_SERVER is a backup server's id or name. --wait draws the task's progress and exits
non-zero when it failed.
"""
from cli.api import ApiError
from cli.output import as_json, listing, record, table
from cli.tasks import follow

RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
BACKUP_COLUMNS = [("id", "id"), ("backup server", "backup_server_name"), ("taken", "taken_at"),
                  ("size", "size_bytes"), ("added", "added_bytes"), ("verification", "verification")]
SERVER_COLUMNS = [("id", "id"), ("name", "name"), ("url", "url"), ("backups", "backups"),
                  ("last backup", "last_backup_at"), ("verification", "last_verification"),
                  ("free", lambda s: f"{s['disk']['free_percent']} %" if s["disk"]["free_percent"] is not None else None),
                  ("error", "last_error")]


def _backup_server(api, ref):
    for server in api.get("/backup-servers"):
        if str(server["id"]) == str(ref) or server["name"] == ref:
            return server
    raise ApiError(404, {"error": "backup_server_not_found", "message": f"no backup server {ref}"})


def _task(api, args, task):
    if args.json and not args.wait:
        return as_json(task)
    if not args.wait:
        print(f"task {task['id']} queued: steward tasks show {task['id']} --log")
        return 0
    finished = follow(api, task["id"])
    if finished["state"] != "succeeded":
        print(f"{task['kind']} failed: {finished['error']}")
        return 1
    return 0


def servers_list(api, args):
    listing(args, api.get("/backup-servers"), SERVER_COLUMNS)


def servers_add(api, args):
    added = api.create("/backup-servers", {"server_id": args.server_id, "port": args.port,
                                           "include_monitoring_raw": args.include_monitoring_raw})
    return as_json(added) if args.json else record(added)


def policy(api, args):
    server = _backup_server(api, args.server)
    rules = {rule: getattr(args, rule) for rule in RULES if getattr(args, rule) is not None}
    path = f"/backup-servers/{server['id']}/retention-policy"
    shown = api.request("PUT", path, json=rules) if rules else api.get(path)
    return as_json(shown) if args.json else record(shown)


def schedule(api, args):
    server = _backup_server(api, args.server)
    made = api.post("/backup-schedules", {"backup_server_id": server["id"], "cron": args.cron, "kind": args.kind})
    return as_json(made) if args.json else record(made)


def backups_list(api, args):
    params = {"backup_server_id": _backup_server(api, args.server)["id"]} if args.server else {}
    listing(args, api.get("/backups", **params), BACKUP_COLUMNS)


def backups_show(api, args):
    backup = api.get(f"/backups/{args.backup}")
    return as_json(backup) if args.json else record(backup)


def backups_run(api, args):
    return _task(api, args, api.create("/backups", {"backup_server_id": _backup_server(api, args.server)["id"]}))


def backups_verify(api, args):
    return _task(api, args, api.create(f"/backups/{args.backup}/actions/verify"))


def backups_restore(api, args):
    path = f"/backups/{args.backup}/actions/restore"
    if not args.live:
        return _task(api, args, api.create(path, {"into": args.into}))
    try:  # unconfirmed, the API refuses and names the live database: the operator types that name back
        return _task(api, args, api.create(path, {"live": True}))
    except ApiError as refused:
        live = (refused.body.get("details") or {}).get("live_database")
        if refused.status != 400 or not live:
            raise
        live = live[0]
    if not args.yes:
        print(f"This replaces the control plane's database {live} with backup {args.backup}: everything changed since "
              f"that backup is undone (the database as it is now is kept, renamed, connections off).")
        try:
            typed = input(f"Type {live} to go on: ").strip()
        except EOFError:
            typed = ""
        if typed != live:
            print("not confirmed: nothing restored")
            return 1
    return _task(api, args, api.create(path, {"live": True, "confirm": live}))


def backups_prune(api, args):
    server = _backup_server(api, args.server)
    result = api.post(f"/backup-servers/{server['id']}/actions/prune", {"dry_run": args.dry_run})
    if args.json:
        return as_json(result)
    print("keep:")
    table([dict(b, why=", ".join(b["reasons"])) for b in result["keep"]], [("id", "id"), ("taken", "taken_at"),
                                                                            ("why", "why")])
    print(f"\n{'would remove' if args.dry_run else 'removing'}:")
    table(result["remove"], [("id", "id"), ("taken", "taken_at")])
    if result.get("task"):
        print(f"\nprune task {result['task']['id']}: steward tasks show {result['task']['id']} --log")


def backups_delete(api, args):
    api.delete(f"/backups/{args.backup}")
    print(f"backup {args.backup} deleted")


def add_commands(groups):
    """Adds `steward backups ...` to the parser."""
    backups = groups.add_parser("backups", help="managed backups of the control plane").add_subparsers(
        dest="command", required=True)
    servers = backups.add_parser("servers", help="backup servers").add_subparsers(dest="servers_command", required=True)
    p = servers.add_parser("list", help="backup servers, their disk, last backup and verification")
    p.set_defaults(func=servers_list)
    p = servers.add_parser("add", help="register a managed server with the backup component")
    p.add_argument("server_id", type=int, help="the managed server's id")
    p.add_argument("--port", type=int, default=8743, help="its daemon's port")
    p.add_argument("--include-monitoring-raw", action="store_true", help="also back up raw monitoring statistics")
    p.set_defaults(func=servers_add)
    p = backups.add_parser("policy", help="show or set a backup server's retention policy")
    p.add_argument("server", help="backup server id or name")
    for rule in RULES:
        p.add_argument(f"--{rule.replace('_', '-')}", dest=rule, type=int, metavar="N")
    p.set_defaults(func=policy)
    p = backups.add_parser("schedule", help="schedule backups (or verifications) of a backup server")
    p.add_argument("server", help="backup server id or name")
    p.add_argument("--cron", required=True, help="minute hour day month weekday, UTC, e.g. '0 3 * * *'")
    p.add_argument("--kind", choices=("backup", "verify"), default="backup")
    p.set_defaults(func=schedule)
    p = backups.add_parser("list", help="stored backups, newest first")
    p.add_argument("--server", help="one backup server's (id or name)")
    p.set_defaults(func=backups_list)
    p = backups.add_parser("show", help="a backup and its verification")
    p.add_argument("backup", help="backup id")
    p.set_defaults(func=backups_show)
    for name, func, helptext in (("run", backups_run, "back up now"), ("verify", backups_verify, "verify a backup"),
                                 ("restore", backups_restore, "restore a backup into a new database")):
        p = backups.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("--server", required=True, help="backup server id or name")
        else:
            p.add_argument("backup", help="backup id")
        if name == "restore":
            target = p.add_mutually_exclusive_group(required=True)
            target.add_argument("--into", metavar="DATABASE", help="a new database to restore into")
            target.add_argument("--live", action="store_true",
                                help="replace the control plane's own database with the backup (asks first)")
            p.add_argument("--yes", action="store_true", help="with --live: no question (scripts)")
        p.add_argument("--wait", action="store_true", help="follow the task; exit 1 if it fails")
        p.set_defaults(func=func)
    p = backups.add_parser("prune", help="apply the retention policy (or only list what it would remove)")
    p.add_argument("--server", required=True, help="backup server id or name")
    p.add_argument("--dry-run", action="store_true", help="list what would go and why each kept backup stays")
    p.set_defaults(func=backups_prune)
    p = backups.add_parser("delete", help="delete a backup that the retention policy does not keep")
    p.add_argument("backup", help="backup id")
    p.set_defaults(func=backups_delete)
