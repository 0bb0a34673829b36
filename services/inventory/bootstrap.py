"""Make sure an admin user exists and issue it a new API token.

    python -m services.inventory.bootstrap --admin admin [--token-file PATH] [--password-file PATH]

A deployment step (``make up`` runs it): it talks to the database directly,
so it works before any service is running.
"""
import argparse
import os
import secrets
import sys

from sqlalchemy.orm import Session

from services.inventory.identity import Identity
from shared.config import load_settings
from shared.db import make_engine
from shared.errors import UserNotFound


def bootstrap_admin(database_url, name, token_name="bootstrap", password=None):
    engine = make_engine(database_url, pool_size=1)
    try:
        with Session(engine) as session:
            identity = Identity(session)
            try:
                user = identity.user_by_name(name)
                if user.role != "admin":
                    user.role = "admin"
            except UserNotFound:
                user = identity.create_user(name, role="admin")
            if password:
                identity.update_user(user.id, {"password": password})
            _, secret = identity.create_token(user, token_name)
            session.commit()
            return secret
    finally:
        engine.dispose()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="admin", help="admin user name (default: admin)")
    parser.add_argument("--token-file", help="write the token here (mode 0600) instead of printing it")
    parser.add_argument("--password-file", help="the web console password to set: this file's, or a new one "
                                                "written to it (mode 0600) when it does not exist")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    password = None
    if args.password_file:
        if not os.path.exists(args.password_file):
            _write_secret(args.password_file, secrets.token_urlsafe(18))
        with open(args.password_file) as handle:
            password = handle.read().strip()
    secret = bootstrap_admin(load_settings(args.config).database_url, args.admin, password=password)
    if args.token_file:
        _write_secret(args.token_file, secret)
    else:
        print(secret)
    return 0


def _write_secret(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)


if __name__ == "__main__":
    sys.exit(main())
