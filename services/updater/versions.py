"""Versions compare as versions: ``2.10`` after ``2.9``, ``2.0.1`` after ``2.0``, ``2.0rc1`` before ``2.0``."""
import re

_PART = re.compile(r"\d+|[A-Za-z]+")
# A version is what an operator types: digits and letters joined by ".", "-", "_" or "+".
VERSION_PATTERN = r"^[0-9][0-9A-Za-z._+-]{0,63}$"


def version_key(version):
    """A sort key: numbers compare as numbers; a letter part (rc, beta) sorts before the release."""
    parts = [int(p) if p.isdigit() else p.lower() for p in _PART.findall(version)]
    release = []
    while parts and isinstance(parts[0], int):
        release.append(parts.pop(0))
    while release and release[-1] == 0:  # "2.0" and "2.0.0" are one version
        release.pop()
    key = [(2, n, "") for n in release]
    key += [(2, p, "") if isinstance(p, int) else (0, 0, p) for p in parts]
    # The end sorts above a letter part ("2.0" after "2.0rc1") and below a number ("2.0" before "2.0.1").
    return tuple(key) + ((1, 0, ""),)


def newest(versions):
    return max(versions, key=version_key) if versions else None


def is_newer(candidate, current):
    return current is None or version_key(candidate) > version_key(current)
