"""The backup service's own errors; those that reach the API are typed in shared.errors."""
from shared.errors import WrongBackupPassword  # noqa: F401 (keys.py raises it)


class EngineFailed(Exception):
    """restic (or pg_dump / pg_restore beside it) exited non-zero; the message holds what it said."""
