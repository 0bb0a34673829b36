"""Users, groups, server users and API tokens."""
import math
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import ARRAY, Integer, any_, bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from services.inventory.models import ApiToken, Group, Server, SignInFailure, User
from services.inventory.passwords import hash_password, password_matches
from shared.authz import AGENT_SCOPE, agent_principal, is_admin, require_role
from shared.crypto import new_token, token_hash
from shared.errors import (DuplicateName, NotAuthenticated, PermissionDenied, TokenNotFound, TooManyAttempts,
                           UserNotFound, ValidationFailed)
from shared.schemas.identity import SERVERS_GROUP, SESSION_SCOPE

# A token's last_used_at is refreshed at most this often, so auth stays a read.
LAST_USED_RESOLUTION = timedelta(minutes=1)
AGENT_TOKENS_PAGE = 5000  # agent tokens per answer of agent_tokens (about 450 kB of JSON)
# Failed sign-ins allowed per user name, and per client address, within SIGN_IN_WINDOW; one more gets 429.
SIGN_IN_FAILURES_ALLOWED = 5
SIGN_IN_WINDOW = timedelta(minutes=1)



def principal_of(token):
    """Who a token speaks for. An agent token is not its user: it may only report for its server."""
    if token.scope == AGENT_SCOPE:
        return agent_principal(token.server_id)
    user = token.user
    return {"user_id": user.id, "name": user.name, "role": user.role, "groups": [g.name for g in user.groups],
            "scope": "full", "server_id": None}


def revoked_holders(tokens):
    """Whose tokens ``tokens`` are, as the tokens_revoked event names them (shared/events.py): an agent
    token's server, any other token's user; None when there are none."""
    user_ids = sorted({t.user_id for t in tokens if t.scope != AGENT_SCOPE})
    server_ids = sorted({t.server_id for t in tokens if t.scope == AGENT_SCOPE and t.server_id is not None})
    return {"user_ids": user_ids, "server_ids": server_ids} if user_ids or server_ids else None


def user_dict(user):
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "groups": [g.name for g in user.groups],
        "password_set": user.password_hash is not None,
        "created_at": user.created_at,
    }


def token_dict(token):
    return {
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "user": token.user.name,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
    }


class Identity:
    def __init__(self, session, now=lambda: datetime.now(timezone.utc)):
        self.session = session
        self.now = now

    # -- users and groups ----------------------------------------------
    def _group(self, name):
        group = self.session.scalar(select(Group).where(Group.name == name))
        if group is None:
            group = Group(name=name)
            self.session.add(group)
            self.session.flush()
        return group

    def user_by_name(self, name):
        user = self.session.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserNotFound(f"no user named {name}", {"user": [f"no user named {name}"]})
        return user

    def user_by_id(self, user_id):
        user = self.session.get(User, user_id)
        if user is None:
            raise UserNotFound(f"no user with id {user_id}")
        return user

    def list_users(self):
        return list(self.session.scalars(select(User).order_by(User.name)))

    def create_user(self, name, role="viewer", groups=(), auto_created=False, password=None):
        user = User(name=name, role=role, auto_created=auto_created,
                    password_hash=hash_password(password) if password else None)
        user.groups = [self._group(g) for g in dict.fromkeys(groups)]
        self.session.add(user)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise DuplicateName(f"a user named {name} already exists", {"name": ["already exists"]}) from None
        return user

    def update_user(self, user_id, changes):
        user = self.user_by_id(user_id)
        if "role" in changes:
            user.role = changes["role"]
        if "groups" in changes:
            user.groups = [self._group(g) for g in dict.fromkeys(changes["groups"])]
        if "password" in changes:
            user.password_hash = hash_password(changes["password"])
        self.session.flush()
        return user

    def delete_user(self, user_id):
        """Removes the user and, with it, their tokens: returns whose tokens went (``revoked_holders``)."""
        user = self.user_by_id(user_id)
        owns = self.session.scalar(select(Server.name).where(Server.server_user_id == user.id).limit(1))
        if owns is not None:
            raise PermissionDenied(f"{user.name} is the server user of {owns}; give that server another user first")
        # Agent tokens of servers this user once served stay theirs after the server user changed.
        holders = revoked_holders(self._tokens_where(ApiToken.user_id == user.id))
        self.session.delete(user)
        self.session.flush()
        return {"user_ids": [user_id], "server_ids": (holders or {}).get("server_ids", [])}

    def _tokens_where(self, condition):
        return list(self.session.scalars(select(ApiToken).where(condition)))

    def server_user(self, name=None):
        """The user a new server belongs to: the one named, or a new random one."""
        if name is None:
            return self.create_user(f"srv-{secrets.token_hex(6)}", role="operator", groups=[SERVERS_GROUP], auto_created=True)
        user = self.user_by_name(name)
        if SERVERS_GROUP not in {g.name for g in user.groups}:
            user.groups = [*user.groups, self._group(SERVERS_GROUP)]
        return user

    # -- tokens ----------------------------------------------------------
    def create_token(self, user, name="api", expires_in_days=None, scope="full", server_id=None, lifetime=None):
        secret = new_token()
        lifetime = lifetime or (timedelta(days=expires_in_days) if expires_in_days else None)
        token = ApiToken(
            user=user,
            name=name,
            scope=scope,
            server_id=server_id,
            token_hash=token_hash(secret),
            prefix=secret[:8],
            expires_at=self.now() + lifetime if lifetime else None,
        )
        self.session.add(token)
        self.session.flush()
        return token, secret

    def tokens_visible_to(self, principal, user_name=None):
        query = select(ApiToken).join(ApiToken.user).order_by(ApiToken.id)
        if not is_admin(principal):
            query = query.where(ApiToken.user_id == principal["user_id"])
        if user_name:
            query = query.where(User.name == user_name)
        return list(self.session.scalars(query))

    def delete_token(self, principal, token_id):
        """Revokes one token: returns whose it was (``revoked_holders``)."""
        token = self.session.get(ApiToken, token_id)
        if token is None or (not is_admin(principal) and token.user_id != principal["user_id"]):
            raise TokenNotFound(f"no token with id {token_id}")
        holders = revoked_holders([token])
        self.session.delete(token)
        self.session.flush()
        return holders

    def token_owner_for(self, principal, user_name):
        """Whose token a caller may create: their own, or anyone's for an admin."""
        if not user_name or user_name == principal["name"]:
            return self.user_by_id(principal["user_id"])
        require_role(principal, "admin")
        return self.user_by_name(user_name)

    def sign_in(self, name, password, lifetime, address):
        """A console session: a token of the user's that expires after ``lifetime``; the same answer for
        an unknown user, a wrong password and a user without one. A failure is recorded (the caller commits it
        before raising); past the limit for the name or the address, 429 without trying the password."""
        self.check_sign_in_limit(name, address)
        user = self.session.scalar(select(User).where(User.name == name))
        if not password_matches(user.password_hash if user else None, password):
            self.record_sign_in_failure(name, address)
            raise NotAuthenticated("wrong user name or password")
        self.session.execute(delete(SignInFailure).where(SignInFailure.name == name, SignInFailure.address == address))
        return self.create_token(user, "console session", scope=SESSION_SCOPE, lifetime=lifetime)

    def change_password(self, user_id, current, new, address, keep_session=None):
        """The user's own password change: the current one must match (a wrong one counts as a failed sign-in);
        the user's other console sessions end, the one that asked (``keep_session``, a token hash) stays."""
        user = self.user_by_id(user_id)
        self.check_sign_in_limit(user.name, address)
        if not password_matches(user.password_hash, current):
            self.record_sign_in_failure(user.name, address)
            raise ValidationFailed("the current password is wrong", {"current_password": ["wrong password"]})
        user.password_hash = hash_password(new)
        self.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.scope == SESSION_SCOPE,
                                                    ApiToken.token_hash != (keep_session or "")))
        self.session.flush()
        return user

    def check_sign_in_limit(self, name, address):
        since = self.now() - SIGN_IN_WINDOW
        waits = []
        for column, value in ((SignInFailure.name, name), (SignInFailure.address, address)):
            recent = list(self.session.scalars(select(SignInFailure.failed_at).where(
                column == value, SignInFailure.failed_at > since).order_by(SignInFailure.failed_at.desc())
                .limit(SIGN_IN_FAILURES_ALLOWED)))
            if len(recent) >= SIGN_IN_FAILURES_ALLOWED:  # free again when the oldest of the last few leaves the window
                waits.append((recent[-1] - since).total_seconds())
        if waits:
            seconds = max(1, math.ceil(max(waits)))
            raise TooManyAttempts(f"too many failed sign-ins; try again in {seconds} s",
                                  {"retry_after_seconds": [str(seconds)]})

    def record_sign_in_failure(self, name, address):
        now = self.now()
        self.session.execute(delete(SignInFailure).where(SignInFailure.failed_at < now - timedelta(hours=1)))
        self.session.add(SignInFailure(name=name[:64], address=address[:45], failed_at=now))
        self.session.flush()

    def sign_out(self, digest):
        """End the console session whose token's hash (``token_hash``) is ``digest``: returns whose it was
        (``revoked_holders``), None if there was none."""
        ended = self._tokens_where((ApiToken.token_hash == digest) & (ApiToken.scope == SESSION_SCOPE))
        self.session.execute(delete(ApiToken).where(ApiToken.token_hash == digest, ApiToken.scope == SESSION_SCOPE))
        return revoked_holders(ended)

    def authenticate(self, digest):
        """The principal of the token whose hash (``token_hash``) is ``digest``."""
        token = self.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest)) \
            if isinstance(digest, str) else None
        now = self.now()
        if token is None or (token.expires_at is not None and token.expires_at <= now):
            raise NotAuthenticated("the API token is unknown, revoked or expired")
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            self.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        return principal_of(token)

    def agent_tokens(self, after_id, limit):
        """A page of the agent tokens that work now, by id after ``after_id``: [[id, digest, server id]], for the
        gateway's copy (gateway/auth_cache.py). One that expires is left to ``authenticate``, which checks."""
        rows = self.session.execute(
            select(ApiToken.id, ApiToken.token_hash, ApiToken.server_id)
            .where(ApiToken.scope == AGENT_SCOPE, ApiToken.server_id.is_not(None), ApiToken.expires_at.is_(None),
                   ApiToken.id > after_id)
            .order_by(ApiToken.id).limit(limit)).all()
        return [list(row) for row in rows]

    def agent_tokens_used(self, server_ids):
        """These servers' agents were let in on the gateway's copy: their tokens' ``last_used_at``, as
        ``authenticate`` keeps it (to LAST_USED_RESOLUTION)."""
        now = self.now()
        ids = bindparam("ids", server_ids, ARRAY(Integer))  # one array parameter for a fleet's worth, not one each
        self.session.execute(
            update(ApiToken)
            .where(ApiToken.scope == AGENT_SCOPE, ApiToken.server_id == any_(ids),
                   ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION))
            .values(last_used_at=now))

    def orphan_agent_tokens(self, delete_them=False):
        """Agent tokens of no server (ids): a server's delete takes its tokens, so these are what a crash,
        a restore or a hand-made change left behind."""
        orphan = (ApiToken.scope == AGENT_SCOPE) & (
            ApiToken.server_id.is_(None) | ~exists().where(Server.id == ApiToken.server_id))
        tokens = self._tokens_where(orphan)
        ids = sorted(t.id for t in tokens)
        if delete_them and ids:
            self.session.execute(delete(ApiToken).where(ApiToken.id.in_(ids)))
        return ids, revoked_holders(tokens) if delete_them else None

    def issue_agent_token(self, server):
        """A new agent token for a server (its bundle carries it); earlier ones stop working: (token, secret,
        whose tokens went (``revoked_holders``, None for the first))."""
        replaced = self.session.execute(
            delete(ApiToken).where(ApiToken.server_id == server.id, ApiToken.scope == AGENT_SCOPE)
        ).rowcount
        token, secret = self.create_token(server.server_user, f"agent {server.name}", scope=AGENT_SCOPE,
                                          server_id=server.id)
        return token, secret, {"user_ids": [], "server_ids": [server.id]} if replaced else None
