"""Tables for people, JSON for scripts."""
import json


def as_json(data):
    print(json.dumps(data, indent=2, sort_keys=True))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def table(rows, columns):
    """``columns`` is a list of (header, key or callable)."""
    cells = [[_cell(key(row) if callable(key) else row.get(key)) for _, key in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def listing(args, rows, columns):
    """``rows`` as JSON with --json, else as a table of ``columns``."""
    if args.json:
        return as_json(rows)
    table(rows, columns)


def record(data):
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        print(f"{key.ljust(width)}  {_cell(value)}")
