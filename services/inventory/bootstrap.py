"""Make sure an admin user exists and issue it a new API token.

    python -m services.inventory.bootstrap --admin admin [--token-file PATH]

A deployment step (``make up`` runs it): it talks to the database directly,
so it works before any service is running.
"""
import argparse
import os
import sys

from sqlalchemy.orm import Session

from services.inventory.identity import Identity
from shared.config import load_settings
from shared.db import make_engine
from shared.errors import UserNotFound


def bootstrap_admin(database_url, name, token_name="bootstrap"):
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
            _, secret = identity.create_token(user, token_name)
            session.commit()
            return secret
    finally:
        engine.dispose()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="admin", help="admin user name (default: admin)")
    parser.add_argument("--token-file", help="write the token here (mode 0600) instead of printing it")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    secret = bootstrap_admin(load_settings(args.config).database_url, args.admin)
    if args.token_file:
        fd = os.open(args.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        os.chmod(args.token_file, 0o600)
    else:
        print(secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
