"""CLI for the notifier: `steward notifications channels|rules|templates|deliveries ...`.

    steward notifications channels list
    steward notifications channels create --name ops --kind email --set host=smtp.example.net --set port=587 \
        --set sender=steward@example.net --set recipients=ops@example.net,oncall@example.net --secret-file pw.txt
    steward notifications channels create --name hook --kind webhook --set url=https://... --secret-file key.txt
    steward notifications channels create --name slack --kind chat --secret-file slack-url.txt
    steward notifications channels test ops | delete ops
    steward notifications rules list
    steward notifications rules create --name outages --channel ops --event server_state_changed \
        --min-severity critical [--server 12 --server 13 | --search dns-berlin]
    steward notifications rules delete outages
    steward notifications templates list [--event server_state_changed] | set --event E --kind email \
        --subject-file s.j2 --body-file b.j2 | delete ID
    steward notifications deliveries list [--status dead] [--channel ops] | show ID | retry ID

Secrets (SMTP password, webhook signing secret, chat webhook URL) come from a
file (``-`` for stdin), never from the command line.
"""
from cli.api import ApiError
from cli.arguments import UsageError, parse_value, read_input
from cli.output import as_json, listing, record, table

SECRET_FIELD = {"email": "password", "webhook": "secret", "chat": "url"}
DELIVERY_COLUMNS = [("id", "id"), ("channel", "channel_name"), ("status", "status"), ("items", "item_count"),
                    ("attempts", "attempts"), ("subject", "subject"), ("created", "created_at"),
                    ("delivered", "delivered_at"), ("last error", "last_error")]


def _settings(assignments):
    settings = {}
    for text in assignments or []:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, not {text!r}")
        value = parse_value(raw)
        if key == "recipients" and isinstance(value, str):
            value = [r for r in value.split(",") if r]
        settings[key] = value
    return settings


def _channel(api, ref):
    channels = api.get("/notifications/channels")
    for channel in channels:
        if str(channel["id"]) == ref or channel["name"] == ref:
            return channel
    raise ApiError(404, {"error": "channel_not_found", "message": f"no channel {ref}"})


def _rule(api, ref):
    for rule in api.get("/notifications/rules"):
        if str(rule["id"]) == ref or rule["name"] == ref:
            return rule
    raise ApiError(404, {"error": "rule_not_found", "message": f"no rule {ref}"})


def channels_list(api, args):
    channels = api.get("/notifications/channels")
    listing(args, channels, [("id", "id"), ("name", "name"), ("kind", "kind"), ("enabled", "enabled"),
                             ("settings", lambda c: {k: v for k, v in c["settings"].items() if v is not None})])


def channels_create(api, args):
    settings = _settings(args.set)
    if args.secret_file:
        settings[SECRET_FIELD[args.kind]] = read_input(args.secret_file)
    channel = api.create("/notifications/channels", {"name": args.name, "kind": args.kind, "settings": settings})
    if args.json:
        return as_json(channel)
    print(f"created {channel['kind']} channel {channel['name']} (id {channel['id']})")


def channels_test(api, args):
    channel = _channel(api, args.channel)
    result = api.post(f"/notifications/channels/{channel['id']}/test")
    if args.json:
        as_json(result)
    else:
        print(("ok: " if result["ok"] else "failed: ") + result["message"] + f" ({result['latency_ms']} ms)")
    return 0 if result["ok"] else 1


def channels_delete(api, args):
    channel = _channel(api, args.channel)
    api.delete(f"/notifications/channels/{channel['id']}")
    print(f"deleted channel {channel['name']} (id {channel['id']})")


def rules_list(api, args):
    rules = api.get("/notifications/rules")
    listing(args, rules, [("id", "id"), ("name", "name"), ("enabled", "enabled"),
                          ("events", lambda r: r["event_types"] or "all"), ("min severity", "min_severity"),
                          ("servers", lambda r: r["server_ids"]
                           or (f"name ~ {r['server_search']}" if r["server_search"] else "all")),
                          ("channels", "channel_ids")])


def rules_create(api, args):
    body = {"name": args.name, "channel_ids": [_channel(api, ref)["id"] for ref in args.channel],
            "event_types": args.event or [], "min_severity": args.min_severity, "server_ids": args.server or []}
    if args.search:
        body["server_search"] = args.search
    rule = api.create("/notifications/rules", body)
    if args.json:
        return as_json(rule)
    print(f"created rule {rule['name']} (id {rule['id']})")


def rules_delete(api, args):
    rule = _rule(api, args.rule)
    api.delete(f"/notifications/rules/{rule['id']}")
    print(f"deleted rule {rule['name']} (id {rule['id']})")


def templates_list(api, args):
    templates = [t for t in api.get("/notifications/templates")
                 if (not args.event or t["event_type"] == args.event) and (not args.kind or t["channel_kind"] == args.kind)]
    listing(args, templates, [("id", "id"), ("event", "event_type"), ("kind", "channel_kind"), ("overridden", "overridden"),
                              ("subject", "subject")])


def templates_set(api, args):
    template = api.create("/notifications/templates", {"event_type": args.event, "channel_kind": args.kind,
                                                     "subject": read_input(args.subject_file), "body": read_input(args.body_file)})
    if args.json:
        return as_json(template)
    print(f"saved template {template['id']} for {template['event_type']} on {template['channel_kind']} channels")


def templates_delete(api, args):
    api.delete(f"/notifications/templates/{args.id}")
    print(f"dropped template {args.id}; the default applies again")


def deliveries_list(api, args):
    channel_id = _channel(api, args.channel)["id"] if args.channel else None
    rows = api.get("/notifications/deliveries", status=args.status, channel_id=channel_id, limit=args.limit)
    listing(args, rows, DELIVERY_COLUMNS)


def _show_delivery(delivery, args):
    if args.json:
        return as_json(delivery)
    record({k: v for k, v in delivery.items() if k not in ("body", "attempt_log")})
    print(f"\n{delivery['body'] or ''}")
    if delivery["attempt_log"]:
        table(delivery["attempt_log"], [("at", "started_at"), ("ok", "ok"), ("ms", "duration_ms"), ("result", "result")])


def deliveries_show(api, args):
    return _show_delivery(api.get(f"/notifications/deliveries/{args.id}"), args)


def deliveries_retry(api, args):
    delivery = api.post(f"/notifications/deliveries/{args.id}/retry")
    if args.json:
        return as_json(delivery)
    print(f"delivery {delivery['id']} is {delivery['status']} again; the notifier sends it within seconds")


def add_commands(groups):
    """Adds `steward notifications ...` to the parser."""
    group = groups.add_parser("notifications", help="notification channels, rules, templates and deliveries")
    kinds = group.add_subparsers(dest="object", required=True)

    channels = kinds.add_parser("channels", help="where notifications go").add_subparsers(dest="command", required=True)
    channels.add_parser("list", help="list channels").set_defaults(func=channels_list)
    p = channels.add_parser("create", help="add a channel")
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=sorted(SECRET_FIELD))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting (repeat); recipients comma separated")
    p.add_argument("--secret-file", metavar="PATH",
                   help="SMTP password, webhook signing secret or chat webhook URL, read from PATH (- for stdin)")
    p.set_defaults(func=channels_create)
    for name, func, text in (("test", channels_test, "send a test message now"), ("delete", channels_delete, "delete")):
        p = channels.add_parser(name, help=text)
        p.add_argument("channel", help="id or name")
        p.set_defaults(func=func)

    rules = kinds.add_parser("rules", help="which events go where").add_subparsers(dest="command", required=True)
    rules.add_parser("list", help="list rules").set_defaults(func=rules_list)
    p = rules.add_parser("create", help="add a rule")
    p.add_argument("--name", required=True)
    p.add_argument("--channel", action="append", required=True, help="channel id or name (repeat)")
    p.add_argument("--event", action="append", help="event type (repeat; default: every notifiable event)")
    p.add_argument("--min-severity", default="info", choices=["info", "warning", "critical"])
    p.add_argument("--server", action="append", type=int, help="server id (repeat; default: every server)")
    p.add_argument("--search", help="only servers whose name contains this")
    p.set_defaults(func=rules_create)
    p = rules.add_parser("delete", help="delete a rule")
    p.add_argument("rule", help="id or name")
    p.set_defaults(func=rules_delete)

    templates = kinds.add_parser("templates", help="message templates").add_subparsers(dest="command", required=True)
    p = templates.add_parser("list", help="templates in effect")
    p.add_argument("--event")
    p.add_argument("--kind", choices=sorted(SECRET_FIELD))
    p.set_defaults(func=templates_list)
    p = templates.add_parser("set", help="override a template (Jinja); refused if it does not render")
    p.add_argument("--event", required=True)
    p.add_argument("--kind", required=True, choices=sorted(SECRET_FIELD))
    p.add_argument("--subject-file", required=True, metavar="PATH")
    p.add_argument("--body-file", required=True, metavar="PATH")
    p.set_defaults(func=templates_set)
    p = templates.add_parser("delete", help="drop an override")
    p.add_argument("id", type=int)
    p.set_defaults(func=templates_delete)

    deliveries = kinds.add_parser("deliveries", help="the delivery log").add_subparsers(dest="command", required=True)
    p = deliveries.add_parser("list", help="newest first")
    p.add_argument("--status", choices=["collecting", "pending", "delivered", "dead"])
    p.add_argument("--channel", help="channel id or name")
    p.add_argument("--limit", type=int)
    p.set_defaults(func=deliveries_list)
    for name, func, text in (("show", deliveries_show, "one delivery with its attempts"),
                             ("retry", deliveries_retry, "send a dead-lettered delivery again")):
        p = deliveries.add_parser(name, help=text)
        p.add_argument("id", type=int)
        p.set_defaults(func=func)
