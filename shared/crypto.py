"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under the deployment's SECRET_KEY.

Any part that stores a secret (SSH credentials, passwords, repository tokens)
seals it with ``SecretBox`` and opens it only where it is used; API responses
say whether a secret is set, never what it is.
"""
import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key):
        if not key:
            raise ValueError("SECRET_KEY is empty")
        # Any string works as SECRET_KEY: derive the 32-byte Fernet key from it.
        digest = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext):
        if plaintext is None:
            return None
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed):
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with this SECRET_KEY") from None


def new_token():
    # Hex, not URL-safe base64: one token in 64 of those began with "-", which a command line
    # (`steward --token ...`) takes for an option. 256 bits either way.
    return secrets.token_hex(32)


def token_hash(token):
    """API tokens are stored only as this hash; high-entropy tokens need no slow KDF."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a, b):
    return hmac.compare_digest(a, b)
