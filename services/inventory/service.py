"""Inventory's RPC entrypoints: validate with a schema, call domain code, dump with a schema."""
from nameko.events import event_handler
from sqlalchemy import text

from services.inventory.admin_settings import AdminSettings
from services.inventory.identity import Identity, token_dict, user_dict
from services.inventory.models import Base
from services.inventory.rabbitmq_check import test_credentials
from services.inventory.servers import Servers, server_detail, server_ref
from shared.authz import require_role
from shared.dependencies import DatabaseSession, Events, RequestContext, Secrets, rpc
from shared.events import load_event
from shared.schemas import load_or_raise
from shared.schemas import identity as identity_schemas
from shared.schemas import servers as server_schemas
from shared.schemas import settings as settings_schemas


# The API's busiest call: one schema for all of them (making one cost more than the load).
_LIST_QUERY = server_schemas.ServerListQuery()


class InventoryService:
    name = "inventory"

    db = DatabaseSession(Base)
    secrets = Secrets()
    events = Events()
    request_id = RequestContext()

    def _servers(self):
        return Servers(self.db, self.secrets)

    @rpc
    def health(self):
        self.db.execute(text("SELECT 1"))
        return {"service": self.name, "database": "ok"}

    # -- servers ---------------------------------------------------------
    @rpc
    def create_server(self, principal, data):
        data = load_or_raise(server_schemas.ServerCreate(), data, "server")
        server = self._servers().create(principal, data)
        self.db.commit()
        self.events.emit("server_created", server=server_ref(server))
        return server_schemas.ServerDetail().dump(server_detail(server))

    @rpc
    def get_server(self, principal, server_id):
        require_role(principal, "viewer")
        return server_schemas.ServerDetail().dump(server_detail(self._servers().get(server_id)))

    @rpc
    def update_server(self, principal, server_id, data):
        changes = load_or_raise(server_schemas.ServerUpdate(), data, "server change")
        server, changed = self._servers().update(principal, server_id, changes)
        self.db.commit()
        if changed:
            self.events.emit("server_updated", server=server_ref(server), changed=changed)
        return server_schemas.ServerDetail().dump(server_detail(server))

    @rpc
    def delete_server(self, principal, server_id):
        ref = self._servers().delete(principal, server_id)
        self.db.commit()
        self.events.emit("server_deleted", server=ref)
        return ref

    @rpc
    def list_servers(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(_LIST_QUERY, query, "query")
        rows, total = self._servers().page(**query)
        # The hot path of the API: rows are already plain (fleet.list_row owns their
        # shape, ServerPage documents it), so a schema dump would only cost time.
        return {"items": rows, "total": total, "page": query["page"], "per_page": query["per_page"]}

    @rpc
    def set_component_state(self, server_id, component, state, version=None):
        """Called by the provisioner and updater when a component starts, stops or changes version."""
        server = self._servers().set_component(server_id, component, state, version)
        self.db.commit()
        return server_schemas.ServerDetail().dump(server_detail(server))

    @event_handler("monitoring_ingest", "server_state_changed")
    def handle_server_state_changed(self, payload):
        """Liveness transitions become the stored state, so the list can filter on down servers."""
        event = load_event("server_state_changed", payload)
        self._servers().record_liveness(event["server_id"], event["state"])
        self.db.commit()

    @rpc
    def server_credentials(self, server_id):
        """SSH credentials for the provisioner and updater only; the gateway never calls this."""
        return self._servers().credentials(server_id)

    # -- admin settings ----------------------------------------------------
    @rpc
    def get_settings(self, principal):
        require_role(principal, "viewer")
        return settings_schemas.AdminSettings().dump(AdminSettings(self.db, self.secrets).effective())

    @rpc
    def effective_settings(self):
        """Settings with secrets opened, for services that act on them (never for the API)."""
        return AdminSettings(self.db, self.secrets).effective(reveal=True)

    @rpc
    def update_settings(self, principal, patch):
        require_role(principal, "admin")
        # partial: a PATCH names only what it changes, so no defaults are filled in.
        patch = load_or_raise(settings_schemas.AdminSettings(partial=True), patch, "settings")
        AdminSettings(self.db, self.secrets).update(patch)
        self.db.commit()
        return self.get_settings(principal)

    @rpc
    def test_rabbitmq(self, principal, data):
        require_role(principal, "admin")
        given = load_or_raise(settings_schemas.RabbitMQTest(), data, "RabbitMQ credentials")
        saved = AdminSettings(self.db, self.secrets).effective(reveal=True)["rabbitmq"]
        self.db.rollback()  # release the connection before the (slow) network check
        merged = {k: given.get(k, saved.get(k)) for k in ("host", "port", "user", "password", "vhost")}
        return settings_schemas.RabbitMQTestResult().dump(test_credentials(**merged))

    # -- identity ----------------------------------------------------------
    @rpc
    def authenticate(self, token):
        principal = Identity(self.db).authenticate(token)
        self.db.commit()
        return principal

    @rpc
    def list_users(self, principal):
        require_role(principal, "admin")
        return identity_schemas.User(many=True).dump([user_dict(u) for u in Identity(self.db).list_users()])

    @rpc
    def get_user(self, principal, user_id):
        if principal["user_id"] != user_id:
            require_role(principal, "admin")
        return identity_schemas.User().dump(user_dict(Identity(self.db).user_by_id(user_id)))

    @rpc
    def create_user(self, principal, data):
        require_role(principal, "admin")
        data = load_or_raise(identity_schemas.UserCreate(), data, "user")
        user = Identity(self.db).create_user(data["name"], data["role"], data["groups"])
        self.db.commit()
        return identity_schemas.User().dump(user_dict(user))

    @rpc
    def update_user(self, principal, user_id, data):
        require_role(principal, "admin")
        changes = load_or_raise(identity_schemas.UserUpdate(), data, "user change")
        user = Identity(self.db).update_user(user_id, changes)
        self.db.commit()
        return identity_schemas.User().dump(user_dict(user))

    @rpc
    def delete_user(self, principal, user_id):
        require_role(principal, "admin")
        Identity(self.db).delete_user(user_id)
        self.db.commit()

    @rpc
    def create_token(self, principal, data):
        data = load_or_raise(identity_schemas.TokenCreate(), data, "token")
        identity = Identity(self.db)
        owner = identity.token_owner_for(principal, data.get("user"))
        token, secret = identity.create_token(owner, data["name"], data["expires_in_days"])
        self.db.commit()
        return identity_schemas.NewToken().dump(dict(token_dict(token), token=secret))

    @rpc
    def issue_agent_token(self, server_id):
        """For the provisioner: a fresh agent token for a server's bundle (never through the API)."""
        server = self._servers().get(server_id)
        token, secret = Identity(self.db).issue_agent_token(server)
        self.db.commit()
        return {"server_id": server.id, "token": secret, "token_id": token.id}

    @rpc
    def list_tokens(self, principal, user=None):
        tokens = Identity(self.db).tokens_visible_to(principal, user)
        return identity_schemas.Token(many=True).dump([token_dict(t) for t in tokens])

    @rpc
    def delete_token(self, principal, token_id):
        Identity(self.db).delete_token(principal, token_id)
        self.db.commit()

