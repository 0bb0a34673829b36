"""Inventory's RPC entrypoints: validate with a schema, call domain code, dump with a schema."""
from datetime import timedelta

from nameko.events import event_handler
from nameko.timer import timer

from services.inventory.dependencies import InventoryDatabase
from services.inventory.identity import AGENT_TOKENS_PAGE, principal_of, token_dict, user_dict
from services.inventory.models import Base, idempotency_keys
from services.inventory.rabbitmq_check import test_credentials
from services.inventory.servers import server_detail, server_ref
from shared.authz import require_role
from shared.crypto import AGENT_TOKEN, API_TOKEN, BACKUP_PASSWORD, RABBITMQ_PASSWORD, REPOSITORY_TOKEN
from shared.db import ping
from shared.errors import NotAuthenticated, ValidationFailed
from shared.dependencies import Events, IdempotencyKeys, RequestContext, rpc
from shared.events import load_event
from shared.schemas import load_or_raise
from shared.schemas import identity as identity_schemas
from shared.schemas import servers as server_schemas
from shared.schemas import settings as settings_schemas


# The API's busiest call: one schema for all of them (making one cost more than the load).
_LIST_QUERY = server_schemas.ServerListQuery()


class InventoryService:
    name = "inventory"

    db = InventoryDatabase(Base)  # .servers, .identity, .settings over the worker's session
    events = Events()
    request_id = RequestContext()
    idempotency = IdempotencyKeys(idempotency_keys)

    def _tokens_revoked(self, reason, holders):
        """Tell every gateway, in this transaction, to drop what it cached of these tokens (``holders``:
        identity.revoked_holders; None: no token went)."""
        if holders:
            self.events.emit("tokens_revoked", reason=reason, **holders)

    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db.session)}

    # -- servers ---------------------------------------------------------
    @rpc
    def create_server(self, principal, data):
        def create():
            server = self.db.servers.create(principal, load_or_raise(server_schemas.ServerCreate(), data, "server"))
            self.events.emit("server_created", server=server_ref(server))  # in the outbox, committed with the server
            return server_schemas.ServerDetail().dump(server_detail(server))

        return self.idempotency.answer(self.db.session, principal, data, create)

    @rpc
    def get_server(self, principal, server_id):
        require_role(principal, "viewer")
        return server_schemas.ServerDetail().dump(server_detail(self.db.servers.get(server_id)))

    @rpc
    def update_server(self, principal, server_id, data):
        changes = load_or_raise(server_schemas.ServerUpdate(), data, "server change")
        server, changed = self.db.servers.update(principal, server_id, changes)
        if changed:
            self.events.emit("server_updated", server=server_ref(server), changed=changed)
        self.db.commit()
        return server_schemas.ServerDetail().dump(server_detail(server))

    @rpc
    def delete_server(self, principal, server_id):
        ref, revoked = self.db.servers.delete(principal, server_id)
        self.events.emit("server_deleted", server=ref)
        self._tokens_revoked("server_deleted", revoked)
        self.db.commit()
        return ref

    @rpc
    def list_servers(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(_LIST_QUERY, query, "query")
        rows, total = self.db.servers.page(**query)
        # The hot path of the API: rows are already plain (fleet.list_row owns their
        # shape, ServerPage documents it), so a schema dump would only cost time.
        return {"items": rows, "total": total, "page": query["page"], "per_page": query["per_page"]}

    @rpc
    def set_component_state(self, server_id, component, state, version=None):
        """Called by the provisioner and updater when a component starts, stops or changes version."""
        server = self.db.servers.set_component(server_id, component, state, version)
        self.db.commit()
        return server_schemas.ServerDetail().dump(server_detail(server))

    @event_handler("monitoring_ingest", "server_state_changed")
    def handle_server_state_changed(self, payload):
        """Liveness transitions become the stored state, so the list can filter on down servers."""
        event = load_event("server_state_changed", payload)
        if self.db.first_delivery("server_state_changed", event):
            self.db.servers.record_liveness(event["server_id"], event["state"])
        self.db.commit()

    @event_handler("monitoring_ingest", "server_versions_reported")
    def handle_server_versions_reported(self, payload):
        """What a server's heartbeat says runs there becomes its components, installed by Steward or by hand."""
        event = load_event("server_versions_reported", payload)
        if self.db.first_delivery("server_versions_reported", event):
            self.db.servers.record_reported_versions(event["server_id"], event["versions"])
        self.db.commit()

    @timer(interval=60)
    def prune_fleet_changes(self):
        """Fleet copies read the changes of the last minutes only (fleet.py): forget older ones."""
        self.db.servers.prune_fleet_changes()
        self.db.commit()

    # -- for reconcile (the provisioner; never through the API) -------------------
    @rpc
    def fleet_versions(self):
        """Every server's id, name and stored running versions."""
        return self.db.servers.stored_versions()

    @rpc
    def record_reported_versions(self, server_id, versions):
        """What handle_server_versions_reported does, when reconcile found the stored versions not the reported."""
        self.db.servers.record_reported_versions(server_id, versions)
        self.db.commit()

    @rpc
    def orphan_agent_tokens(self, delete=False):
        """Agent tokens whose server is gone (ids); ``delete``: revoke them."""
        found, revoked = self.db.identity.orphan_agent_tokens(delete)
        self._tokens_revoked("orphans_removed", revoked)
        self.db.commit()
        return found

    @rpc
    def server_credentials(self, server_id):
        """SSH credentials for the provisioner and updater only; the gateway never calls this."""
        return self.db.servers.credentials(server_id)

    # -- admin settings ----------------------------------------------------
    @rpc
    def get_settings(self, principal):
        require_role(principal, "viewer")
        return settings_schemas.AdminSettings().dump(self.db.settings.effective())

    @rpc
    def effective_settings(self):
        """Settings with defaults filled in, for services that act on them; secrets only as ``*_set`` flags."""
        return self.db.settings.effective()

    @rpc
    def broker_settings(self):
        """For the provisioner, which makes agents' broker users: the RabbitMQ section, its password sealed."""
        rabbitmq = self.db.settings.effective()["rabbitmq"]
        password = self.db.settings.secret("rabbitmq", "password")
        return dict(rabbitmq, password=self.db.box.seal_for(RABBITMQ_PASSWORD, password))

    @rpc
    def backup_password(self):
        """For the backup service, whose repository key it wraps: the managed-backup password, sealed (None: unset)."""
        return self.db.box.seal_for(BACKUP_PASSWORD, self.db.settings.secret("backup", "password"))

    @rpc
    def repository_tokens(self):
        """For the updater in internet mode: {component: token sealed} of the components that have one."""
        return {component: self.db.box.seal_for(REPOSITORY_TOKEN, token)
                for component, token in self.db.settings.repository_tokens().items()}

    @rpc
    def collector_switches(self):
        """For the gateway's heartbeat answer: which of the agents' collectors the monitoring settings want on."""
        monitoring = self.db.settings.effective()["monitoring"]
        return {"system": monitoring["system_monitoring"], "dns": monitoring["dns_monitoring"]}

    @rpc
    def update_settings(self, principal, patch):
        require_role(principal, "admin")
        # partial: a PATCH names only what it changes, so no defaults are filled in.
        patch = load_or_raise(settings_schemas.AdminSettings(partial=True), patch, "settings")
        self.db.settings.update(patch)
        self.db.commit()
        return self.get_settings(principal)

    @rpc
    def test_rabbitmq(self, principal, data):
        require_role(principal, "admin")
        given = load_or_raise(settings_schemas.RabbitMQTest(), data, "RabbitMQ credentials")
        saved = dict(self.db.settings.effective()["rabbitmq"], password=self.db.settings.secret("rabbitmq", "password"))
        self.db.rollback()  # release the connection before the (slow) network check
        merged = {k: given.get(k, saved.get(k)) for k in ("host", "port", "user", "password", "vhost")}
        return settings_schemas.RabbitMQTestResult().dump(test_credentials(**merged))

    # -- identity ----------------------------------------------------------
    @rpc
    def authenticate(self, digest):
        """The principal of the token whose ``shared.crypto.token_hash`` is ``digest``: the token itself never
        crosses the broker."""
        principal = self.db.identity.authenticate(digest)
        self.db.commit()
        return principal

    @rpc
    def agent_tokens(self, after_id=0):
        """For the gateway only: a page of the working agent tokens' digests and servers, for its copy that lets
        heartbeats in without an ``authenticate`` each (identity.agent_tokens); empty after the last."""
        page = self.db.identity.agent_tokens(int(after_id), AGENT_TOKENS_PAGE)
        self.db.commit()
        return page

    @rpc
    def agent_tokens_used(self, server_ids):
        """For the gateway only: the servers whose agents its copy let in since it last said."""
        self.db.identity.agent_tokens_used([int(i) for i in server_ids])
        self.db.commit()

    @rpc
    def sign_in(self, data, lifetime_seconds, address="unknown"):
        """A console session for a user name and password: its token (sealed, for the gateway's cookie) and who
        it is. ``address`` is the client's, for the sign-in limit."""
        data = load_or_raise(identity_schemas.SignIn(), data, "sign-in")
        try:
            token, secret = self.db.identity.sign_in(data["name"], data["password"],
                                                     timedelta(seconds=lifetime_seconds), address)
        except NotAuthenticated:
            self.db.commit()  # the failure counts
            raise
        self.db.commit()
        return {"token": self.db.box.seal_for(API_TOKEN, secret), "expires_at": token.expires_at.isoformat(),
                "user": principal_of(token)}

    @rpc
    def change_password(self, principal, data, address="unknown", keep_session=None):
        """The signed-in user's own password, given the current one; their other console sessions end."""
        require_role(principal, "viewer")
        data = load_or_raise(identity_schemas.PasswordChange(), data, "password change")
        try:
            user = self.db.identity.change_password(principal["user_id"], data["current_password"],
                                                    data["new_password"], address, keep_session)
        except ValidationFailed:
            self.db.commit()  # the wrong current password counts as a failed sign-in
            raise
        self._tokens_revoked("password_changed", {"user_ids": [user.id]})  # the user's other sessions ended
        self.db.commit()
        return identity_schemas.User().dump(user_dict(user))

    @rpc
    def sign_out(self, digest):
        """Ends the console session whose token's ``token_hash`` is ``digest``."""
        self._tokens_revoked("signed_out", self.db.identity.sign_out(digest))
        self.db.commit()

    @rpc
    def list_users(self, principal):
        require_role(principal, "admin")
        return identity_schemas.User(many=True).dump([user_dict(u) for u in self.db.identity.list_users()])

    @rpc
    def get_user(self, principal, user_id):
        if principal["user_id"] != user_id:
            require_role(principal, "admin")
        return identity_schemas.User().dump(user_dict(self.db.identity.user_by_id(user_id)))

    @rpc
    def create_user(self, principal, data):
        require_role(principal, "admin")

        def create():
            user = load_or_raise(identity_schemas.UserCreate(), data, "user")
            made = self.db.identity.create_user(user["name"], user["role"], user["groups"], password=user.get("password"))
            return identity_schemas.User().dump(user_dict(made))

        return self.idempotency.answer(self.db.session, principal, data, create)

    @rpc
    def update_user(self, principal, user_id, data):
        require_role(principal, "admin")
        changes = load_or_raise(identity_schemas.UserUpdate(), data, "user change")
        user = self.db.identity.update_user(user_id, changes)
        if "role" in changes or "groups" in changes:  # what the user's cached tokens grant changed
            self._tokens_revoked("user_changed", {"user_ids": [user.id]})
        self.db.commit()
        return identity_schemas.User().dump(user_dict(user))

    @rpc
    def delete_user(self, principal, user_id):
        require_role(principal, "admin")
        self._tokens_revoked("user_deleted", self.db.identity.delete_user(user_id))
        self.db.commit()

    @rpc
    def create_token(self, principal, data):
        def create():
            wanted = load_or_raise(identity_schemas.TokenCreate(), data, "token")
            owner = self.db.identity.token_owner_for(principal, wanted.get("user"))
            token, secret = self.db.identity.create_token(owner, wanted["name"], wanted["expires_in_days"])
            return identity_schemas.NewToken().dump(dict(token_dict(token), token=secret))

        answer = self.idempotency.answer(self.db.session, principal, data, create, sealed=("token",))
        # The new token crosses the broker sealed; the gateway opens it as it answers.
        return dict(answer, token=self.db.box.seal_for(API_TOKEN, answer["token"]))

    @rpc
    def issue_agent_token(self, server_id):
        """For the provisioner: a fresh agent token for a server's bundle (never through the API)."""
        server = self.db.servers.get(server_id)
        token, secret, revoked = self.db.identity.issue_agent_token(server)
        self._tokens_revoked("agent_token_reissued", revoked)
        self.db.commit()
        return {"server_id": server.id, "token": self.db.box.seal_for(AGENT_TOKEN, secret), "token_id": token.id}

    @rpc
    def list_tokens(self, principal, query=None):
        query = load_or_raise(identity_schemas.TokenListQuery(), query, "query")
        tokens = self.db.identity.tokens_visible_to(principal, query.get("user"))
        return identity_schemas.Token(many=True).dump([token_dict(t) for t in tokens])

    @rpc
    def delete_token(self, principal, token_id):
        self._tokens_revoked("token_deleted", self.db.identity.delete_token(principal, token_id))
        self.db.commit()

