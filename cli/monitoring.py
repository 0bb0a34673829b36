"""`steward monitoring system|dns|records|rps`: a server's statistics as tables (--json: the API's answer).

    steward monitoring system SERVER [--start T] [--end T] [--step S]      load, memory, disk, connections
    steward monitoring dns SERVER [--start T] [--end T] [--step S]         queries answered per step
    steward monitoring records SERVER [--start T] [--end T] [--sort -hits] [--search TEXT] [--page N]
                                                                           every record's hits in the period
    steward monitoring rps NAME [--type A] [--server SERVER] [--start T] [--end T] [--step S]

T is ISO 8601 with an offset (2026-01-01T00:00:00+00:00); the default period is the last hour.

    steward dead-letters list [--queue monitoring.dead] | show|retry|drop ID      (admins)
"""
from cli.output import as_json, record, table
from cli.servers import find_server
from shared.schemas.monitoring import DEAD_LETTER_QUEUES, RECORD_HITS_SORTS


def _period(args):
    return {"start": args.start, "end": args.end, "step": getattr(args, "step", None)}


def monitoring_system(api, args):
    server = find_server(api, args.server)
    series = api.get(f"/monitoring/servers/{server['id']}/system", **_period(args))
    if args.json:
        return as_json(series)
    table(series["points"], [("at", "at"), ("samples", "samples"), ("load1", lambda p: f"{p['load1']:.2f}"),
                             ("memory used", lambda p: _bytes(p["memory_used_bytes"])),
                             ("memory total", lambda p: _bytes(p["memory_total_bytes"])),
                             ("disk used %", lambda p: f"{p['disk_used_max_percent']:.1f}"),
                             ("connections", lambda p: f"{p['connections_established']:.0f}")])
    print(f"\n{len(series['points'])} point(s) of {series['step']} s for {server['name']}")


def monitoring_dns(api, args):
    server = find_server(api, args.server)
    series = api.get(f"/monitoring/servers/{server['id']}/dns", **_period(args))
    if args.json:
        return as_json(series)
    table(series["points"], [("at", "at"), ("queries", "total")])
    print(f"\n{series['total']} queries in {len(series['points'])} step(s) of {series['step']} s for {server['name']}")


def monitoring_records(api, args):
    server = find_server(api, args.server)
    page = api.get(f"/monitoring/servers/{server['id']}/records/hits", start=args.start, end=args.end,
                   sort=args.sort, search=args.search, page=args.page, per_page=args.per_page)
    if args.json:
        return as_json(page)
    table(page["items"], [("name", "name"), ("type", "type"), ("hits", "hits"), ("last access", "last_access")])
    print(f"\n{len(page['items'])} of {page['total']} record(s), {page['hits']} hits in all, page {page['page']}, "
          f"{page['start']} to {page['end']}")


def monitoring_rps(api, args):
    server_id = find_server(api, args.server)["id"] if args.server else None
    series = api.get("/monitoring/records/rps", name=args.name, type=args.type, server_id=server_id,
                     **_period(args))
    if args.json:
        return as_json(series)
    table(series["points"], [("at", "at"), ("hits", "hits"), ("rps", lambda p: f"{p['rps']:.3f}")])
    print(f"\n{series['name']} {series['type'] or '(all types)'}: {len(series['points'])} step(s) of {series['step']} s")


def _bytes(value):
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _period_options(parser, step=True):
    parser.add_argument("--start", help="ISO 8601 with offset (default: end minus one hour)")
    parser.add_argument("--end", help="ISO 8601 with offset (default: now)")
    if step:
        parser.add_argument("--step", type=int, help="seconds per point, a multiple of 60 (default 60)")


def add_commands(groups):
    """Adds `steward monitoring ...` to the parser."""
    commands = groups.add_parser("monitoring", help="statistics of servers").add_subparsers(dest="command",
                                                                                            required=True)
    p = commands.add_parser("system", help="a server's system statistics per step")
    p.add_argument("server", help="id or name")
    _period_options(p)
    p.set_defaults(func=monitoring_system)
    p = commands.add_parser("dns", help="a server's DNS queries per step")
    p.add_argument("server", help="id or name")
    _period_options(p)
    p.set_defaults(func=monitoring_dns)
    p = commands.add_parser("records", help="every DNS record's hits in a period, sorted and paged")
    p.add_argument("server", help="id or name")
    _period_options(p, step=False)
    p.add_argument("--sort", choices=RECORD_HITS_SORTS, help="default -hits (most asked first)")
    p.add_argument("--search", help="part of the record name")
    p.add_argument("--page", type=int)
    p.add_argument("--per-page", type=int)
    p.set_defaults(func=monitoring_records)
    p = commands.add_parser("rps", help="requests per second of one DNS record over time")
    p.add_argument("name", help="record name")
    p.add_argument("--type", help="query type (A, AAAA, ...); all when omitted")
    p.add_argument("--server", help="one server (id or name); all when omitted")
    _period_options(p)
    p.set_defaults(func=monitoring_rps)


def dead_letters_list(api, args):
    found = api.get("/dead-letters", queue=args.queue, limit=args.limit)
    if args.json:
        return as_json(found)
    table(found["items"], [("id", "id"), ("queue", "queue"), ("routing key", "routing_key"),
                           ("at", "dead_lettered_at"), ("bytes", "size_bytes"), ("reason", "reason")])
    print(f"\n{len(found['items'])} of {found['total']} dead letter(s)")


def dead_letters_show(api, args):
    letter = api.get(f"/dead-letters/{args.id}")
    if args.json:
        return as_json(letter)
    record({k: v for k, v in letter.items() if k != "body"})
    print(f"\n{letter['body']}")


def dead_letters_retry(api, args):
    letter = api.post(f"/dead-letters/{args.id}/retry")
    if args.json:
        return as_json(letter)
    print(f"retried {letter['id']}: sent to {letter['routing_key']} again")


def dead_letters_drop(api, args):
    api.delete(f"/dead-letters/{args.id}")
    if args.json:
        return as_json({"dropped": args.id})
    print(f"dropped {args.id}")


def add_dead_letter_commands(groups):
    """Adds `steward dead-letters list|show|retry|drop` (admins)."""
    commands = groups.add_parser("dead-letters", help="messages a consumer refused (admins)").add_subparsers(
        dest="command", required=True)
    p = commands.add_parser("list", help="dead letters, oldest first, with the reason")
    p.add_argument("--queue", choices=DEAD_LETTER_QUEUES)
    p.add_argument("--limit", type=int)
    p.set_defaults(func=dead_letters_list)
    for name, func, summary in (("show", dead_letters_show, "one dead letter with its body"),
                                ("retry", dead_letters_retry, "send it through again (refused if it would fail again)"),
                                ("drop", dead_letters_drop, "drop it")):
        p = commands.add_parser(name, help=summary)
        p.add_argument("id", help="its id (from list)")
        p.set_defaults(func=func)
