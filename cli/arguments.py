"""What the user typed: usage errors, secrets and templates read from files, values given as text."""
import json
import sys


class UsageError(Exception):
    """The command line asks for something it cannot mean; `steward` exits with status 2, as argparse does."""


def read_input(path):
    """The text of a file the user named, or of stdin for ``-``: how secrets come in (never as arguments,
    which `ps` shows) and templates."""
    if path == "-":
        return sys.stdin.read().rstrip("\n")
    try:
        with open(path) as handle:
            return handle.read().rstrip("\n")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def parse_value(raw):
    """``VALUE`` of a KEY=VALUE: JSON when it reads as JSON (120, true, [1, 2]), else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def filters(items, columns):
    """``--filter-by KEY=VALUE`` options as {key: value}; a key must be one of ``columns``."""
    chosen = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in columns:
            raise UsageError(f"--filter-by takes KEY=VALUE with KEY one of {', '.join(columns)}, not {item!r}")
        chosen[key] = value
    return chosen


def matching(rows, chosen):
    """The rows whose fields equal each chosen value (as text, any case; a list field: one of its items)."""
    def holds(value, wanted):
        values = value if isinstance(value, list) else [value]
        return any(str(v).lower() == wanted.lower() for v in values if v is not None)

    return [row for row in rows if all(holds(row.get(key), wanted) for key, wanted in chosen.items())]
