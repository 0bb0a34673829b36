"""Secrets at rest and on the broker: Fernet (AES-128-CBC + HMAC-SHA256) under the deployment's SECRET_KEY.

Any part that stores a secret (SSH credentials, passwords, repository tokens)
seals it with ``SecretBox`` and opens it only where it is used; API responses
say whether a secret is set, never what it is.

A secret that crosses RPC travels as an envelope, ``{"sealed": <Fernet token>, "purpose": <label>}``,
under a key derived from SECRET_KEY and the label (``seal_for``/``open_sealed``): a value sealed for one
purpose opens as no other. Secrets a request carries in (a server's SSH password in an API body) are
sealed by the gateway for their place in the body (``input:ssh_password``) and opened by the receiving
service's RPC entrypoint at that place only (``open_inputs``); secrets a reply carries out are sealed by
the owner for what they are (``ssh.password``) and opened by the caller's code that uses them.
"""
import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken


INPUT = "input:"
# What the secrets in replies are sealed for: the owner seals, the code that uses one opens it.
SSH_PASSWORD = "ssh.password"
SSH_PRIVATE_KEY = "ssh.private_key"
RABBITMQ_PASSWORD = "settings.rabbitmq.password"
REPOSITORY_TOKEN = "settings.update.repository_token"
BACKUP_PASSWORD = "settings.backup.password"
AGENT_TOKEN = "agent_token"
API_TOKEN = "api_token"
SETUP_BUNDLE = "setup_bundle"


def input_purpose(path):
    """The purpose of a secret sealed at ``path`` (field names from the body's root) of a request body."""
    return INPUT + ".".join(path)


def is_sealed(value):
    return (isinstance(value, dict) and len(value) == 2 and isinstance(value.get("sealed"), str)
            and isinstance(value.get("purpose"), str))


class SecretBox:
    def __init__(self, key):
        if not key:
            raise ValueError("SECRET_KEY is empty")
        # Any string works as SECRET_KEY: derive the 32-byte Fernet key from it.
        digest = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._key = key.encode()
        self._purposes = {}

    def _for(self, purpose):
        fernet = self._purposes.get(purpose)
        if fernet is None:
            # Not the at-rest key: a sealed column copied into a message, or an envelope stored, opens as neither.
            digest = hmac.new(self._key, b"steward rpc seal\0" + purpose.encode(), hashlib.sha256).digest()
            fernet = self._purposes[purpose] = Fernet(base64.urlsafe_b64encode(digest))
        return fernet

    def seal_for(self, purpose, plaintext):
        """The envelope a secret crosses RPC in; None stays None (no secret is set)."""
        if plaintext is None:
            return None
        return {"sealed": self._for(purpose).encrypt(plaintext.encode()).decode(), "purpose": purpose}

    def open_sealed(self, purpose, envelope):
        """The plaintext of an envelope sealed for ``purpose``; ValueError for anything else."""
        if envelope is None:
            return None
        if not is_sealed(envelope) or envelope["purpose"] != purpose:
            raise ValueError(f"expected a secret sealed for {purpose}")
        try:
            return self._for(purpose).decrypt(envelope["sealed"].encode()).decode()
        except InvalidToken:
            raise ValueError(f"the secret sealed for {purpose} cannot be opened with this SECRET_KEY") from None

    def open_inputs(self, value, path=()):
        """``value`` (a request's argument) with each envelope sealed for its own place in it opened. An envelope
        anywhere else, or one that does not open, stays as it is, for the schema to refuse as not a string."""
        if isinstance(value, dict):
            if is_sealed(value) and value["purpose"] == input_purpose(path):
                try:
                    return self.open_sealed(value["purpose"], value)
                except ValueError:
                    return value
            return {key: self.open_inputs(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.open_inputs(item, path) for item in value]
        return value

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


def backup_enrollment_token(secret_key, server_id):
    """The one-time token with which the backup service creates its users on a backup server's daemon.

    The provisioner puts its SHA-256 in the server's bundle and the backup service derives it
    again: no copy is stored or sent. The daemon takes it once.
    """
    return hmac.new(secret_key.encode(), f"steward-backup-enrollment:{server_id}".encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a, b):
    return hmac.compare_digest(a, b)
