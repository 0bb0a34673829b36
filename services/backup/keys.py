"""The repositories' key, held only by the control plane.

restic keeps its master key in the repository, wrapped by the repository password. That
password is a random 256-bit *repository secret*, so what a backup server holds cannot be
brute-forced. The control plane keeps the secret wrapped by a key derived (scrypt) from the
managed-backup password in the admin settings (AES-256-GCM, the ``cryptography`` package):
changing that password re-wraps the secret and re-encrypts no backup. An operator who keeps
the wrapped secret (``steward backups key``) and the password can restore without this
control plane's database.
"""
import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from services.backup.exceptions import WrongBackupPassword
from services.backup.models import BackupKey
from shared.errors import BackupPasswordNotSet

SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}  # ~0.1 s and 32 MiB per derivation here
FORMAT = 1


def new_repository_secret():
    return base64.b64encode(os.urandom(32)).decode()


def _kek(password, salt, n, r, p):
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def wrap(secret, password):
    """The repository secret wrapped under ``password``: a JSON text with everything but the password."""
    salt, nonce = os.urandom(16), os.urandom(12)
    ciphertext = AESGCM(_kek(password, salt, **SCRYPT)).encrypt(nonce, secret.encode(), b"steward-backup-key")
    return json.dumps({"format": FORMAT, "kdf": "scrypt", **SCRYPT, "salt": base64.b64encode(salt).decode(),
                       "nonce": base64.b64encode(nonce).decode(), "ciphertext": base64.b64encode(ciphertext).decode()})


def unwrap(wrapped, password):
    try:
        fields = json.loads(wrapped)
        kek = _kek(password, base64.b64decode(fields["salt"]), fields["n"], fields["r"], fields["p"])
        return AESGCM(kek).decrypt(base64.b64decode(fields["nonce"]), base64.b64decode(fields["ciphertext"]),
                                   b"steward-backup-key").decode()
    except (InvalidTag, KeyError, ValueError, TypeError):
        raise WrongBackupPassword("the managed-backup password does not open the backup key") from None


def rewrap(wrapped, old_password, new_password):
    return wrap(unwrap(wrapped, old_password), new_password)


class KeyRing:
    """The repository secret for the current managed-backup password (``password()`` asks inventory).

    Made on first use; when the password in the settings changed since it was last wrapped, the
    secret is re-wrapped under the new one (old backups stay as they are: restic's own key is unchanged).
    """

    def __init__(self, session_factory, box, password, clock):
        self.Session = session_factory
        self.box = box
        self.password = password
        self.clock = clock

    def secret(self):
        password = self.password()
        if not password:
            raise BackupPasswordNotSet("set the managed-backup password first (steward settings set backup.password=...)",
                                       {"backup": {"password": ["not set"]}})
        with self.Session() as session:
            key = session.get(BackupKey, 1, with_for_update=True)
            if key is None:
                secret = new_repository_secret()
                session.add(BackupKey(id=1, wrapped_secret=wrap(secret, password), wrapped_with_sealed=self.box.seal(password),
                                      created_at=self.clock()))
                session.commit()
                return secret
            wrapped_with = self.box.open(key.wrapped_with_sealed)
            if wrapped_with == password:
                return unwrap(key.wrapped_secret, password)
            secret = unwrap(key.wrapped_secret, wrapped_with)
            key.wrapped_secret, key.wrapped_with_sealed = wrap(secret, password), self.box.seal(password)
            key.rewrapped_at = self.clock()
            session.commit()
            return secret

    def exported(self):
        """The wrapped secret (opens only with the managed-backup password), for safekeeping off this control plane."""
        self.secret()  # wrapped under the current password
        with self.Session() as session:
            return session.get(BackupKey, 1).wrapped_secret
