"""Console passwords: argon2id (argon2-cffi's defaults, RFC 9106's low-memory choice), never kept as given."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified when the user does not exist, so a wrong name costs what a wrong password does.
_UNKNOWN_USER = _hasher.hash("no such user")


def hash_password(password):
    return _hasher.hash(password)


def password_matches(password_hash, password):
    try:
        return _hasher.verify(password_hash or _UNKNOWN_USER, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
