"""Notifier entrypoints: events in (acknowledged after their items commit), deliveries out on a timer, RPC for the API."""
import logging
import time

from marshmallow import ValidationError
from nameko.events import event_handler

from services.notifier.channels import Channels, channel_dict
from services.notifier.delivery import Courier, DeliveryLog
from services.notifier.dependencies import Settings, poll_timer, utcnow
from services.notifier.intake import Intake
from services.notifier.models import Base, idempotency_keys
from services.notifier.rules import Rules, rule_dict
from services.notifier.templates import Templates, template_dict
from shared.authz import require_role
from shared.db import ping
from shared.dependencies import DatabaseSession, IdempotencyKeys, RequestContext, Secrets, rpc
from shared.events import event_type
from shared.schemas import load_or_raise
from shared.schemas import notifier as schemas

log = logging.getLogger(__name__)

# After a failure that is not the event's fault (the database is away), wait before the
# event goes back to the queue, so a replica does not spin on it.
REQUEUE_PAUSE_SECONDS = 1.0


def handles(name):
    """Subscribe to a catalog event on its source's exchange; works before that service exists."""
    return event_handler(event_type(name).source, name, requeue_on_error=True)


class NotifierService:
    name = "notifier"

    db = DatabaseSession(Base)
    idempotency = IdempotencyKeys(idempotency_keys)
    secrets = Secrets()
    settings = Settings()
    request_id = RequestContext()

    # -- events in -----------------------------------------------------------
    def _receive(self, name, payload):
        try:
            outcome = Intake(self.db, self.settings.policy, utcnow).receive(name, payload)
        except ValidationError as exc:
            self.db.rollback()
            log.warning("dropped a malformed %s event", name, extra={"errors": exc.messages})
            return
        except Exception:
            self.db.rollback()
            time.sleep(REQUEUE_PAUSE_SECONDS)
            raise
        self.db.commit()  # before nameko acknowledges the event
        log.debug("event %s: %s", name, outcome)

    @handles("server_created")
    def handle_server_created(self, payload):
        self._receive("server_created", payload)

    @handles("server_updated")
    def handle_server_updated(self, payload):
        self._receive("server_updated", payload)

    @handles("server_deleted")
    def handle_server_deleted(self, payload):
        self._receive("server_deleted", payload)

    @handles("install_finished")
    def handle_install_finished(self, payload):
        self._receive("install_finished", payload)

    @handles("update_finished")
    def handle_update_finished(self, payload):
        self._receive("update_finished", payload)

    @handles("update_rolled_back")
    def handle_update_rolled_back(self, payload):
        self._receive("update_rolled_back", payload)

    @handles("server_state_changed")
    def handle_server_state_changed(self, payload):
        self._receive("server_state_changed", payload)

    @handles("fleet_silence_detected")
    def handle_fleet_silence_detected(self, payload):
        self._receive("fleet_silence_detected", payload)

    @handles("disk_low")
    def handle_disk_low(self, payload):
        self._receive("disk_low", payload)

    @handles("backup_finished")
    def handle_backup_finished(self, payload):
        self._receive("backup_finished", payload)

    @handles("backup_disk_low")
    def handle_backup_disk_low(self, payload):
        self._receive("backup_disk_low", payload)

    @handles("backup_verified")
    def handle_backup_verified(self, payload):
        self._receive("backup_verified", payload)

    @handles("backup_failed")
    def handle_backup_failed(self, payload):
        self._receive("backup_failed", payload)

    @handles("backup_restored")
    def handle_backup_restored(self, payload):
        self._receive("backup_restored", payload)

    @handles("backup_pruned")
    def handle_backup_pruned(self, payload):
        self._receive("backup_pruned", payload)

    # -- deliveries out --------------------------------------------------------
    @poll_timer()
    def send_due(self):
        intake = Intake(self.db, self.settings.policy, utcnow)
        intake.settle_flapping()
        intake.forget_old_events()
        self.db.commit()
        Courier(self.db, self.secrets, self._templates(), self.settings.policy, utcnow).send_due()

    def _templates(self):
        return Templates(self.db, self.settings.public_url)

    # -- API -------------------------------------------------------------------
    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db)}

    @rpc
    def list_channels(self, principal):
        require_role(principal, "viewer")
        return schemas.Channel(many=True).dump([channel_dict(c) for c in Channels(self.db, self.secrets).list()])

    @rpc
    def get_channel(self, principal, channel_id):
        require_role(principal, "viewer")
        return schemas.Channel().dump(channel_dict(Channels(self.db, self.secrets).get(channel_id)))

    @rpc
    def create_channel(self, principal, data):
        require_role(principal, "admin")

        def create():
            channel = Channels(self.db, self.secrets).create(load_or_raise(schemas.ChannelCreate(), data, "channel"))
            return schemas.Channel().dump(channel_dict(channel))

        return self.idempotency.answer(self.db, principal, data, create)

    @rpc
    def update_channel(self, principal, channel_id, data):
        require_role(principal, "admin")
        changes = load_or_raise(schemas.ChannelUpdate(), data, "channel change")
        channel = Channels(self.db, self.secrets).update(channel_id, changes)
        self.db.commit()
        return schemas.Channel().dump(channel_dict(channel))

    @rpc
    def delete_channel(self, principal, channel_id):
        require_role(principal, "admin")
        Channels(self.db, self.secrets).delete(channel_id)
        self.db.commit()

    @rpc
    def test_channel(self, principal, channel_id):
        require_role(principal, "admin")
        return schemas.ChannelTestResult().dump(Channels(self.db, self.secrets).send_test(channel_id))

    @rpc
    def list_rules(self, principal):
        require_role(principal, "viewer")
        return schemas.Rule(many=True).dump([rule_dict(r) for r in Rules(self.db).list()])

    @rpc
    def get_rule(self, principal, rule_id):
        require_role(principal, "viewer")
        return schemas.Rule().dump(rule_dict(Rules(self.db).get(rule_id)))

    @rpc
    def create_rule(self, principal, data):
        require_role(principal, "admin")

        def create():
            return schemas.Rule().dump(rule_dict(Rules(self.db).create(load_or_raise(schemas.RuleCreate(), data, "rule"))))

        return self.idempotency.answer(self.db, principal, data, create)

    @rpc
    def update_rule(self, principal, rule_id, data):
        require_role(principal, "admin")
        changes = load_or_raise(schemas.RuleCreate(partial=True), data, "rule change")
        rule = Rules(self.db).update(rule_id, changes)
        self.db.commit()
        return schemas.Rule().dump(rule_dict(rule))

    @rpc
    def delete_rule(self, principal, rule_id):
        require_role(principal, "admin")
        Rules(self.db).delete(rule_id)
        self.db.commit()

    @rpc
    def list_templates(self, principal):
        require_role(principal, "viewer")
        return schemas.Template(many=True).dump(self._templates().effective())

    @rpc
    def set_template(self, principal, data):
        require_role(principal, "admin")

        def create():
            template = self._templates().set(load_or_raise(schemas.TemplateSet(), data, "template"))
            return schemas.Template().dump(template_dict(template))

        return self.idempotency.answer(self.db, principal, data, create)

    @rpc
    def delete_template(self, principal, template_id):
        require_role(principal, "admin")
        self._templates().delete(template_id)
        self.db.commit()

    @rpc
    def list_deliveries(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.DeliveryQuery(), query, "query")
        return schemas.Delivery(many=True).dump(DeliveryLog(self.db, utcnow).page(**query))

    @rpc
    def get_delivery(self, principal, delivery_id):
        require_role(principal, "viewer")
        return schemas.DeliveryDetail().dump(DeliveryLog(self.db, utcnow).get(delivery_id))

    @rpc
    def retry_delivery(self, principal, delivery_id):
        require_role(principal, "admin")
        deliveries = DeliveryLog(self.db, utcnow)
        deliveries.retry(delivery_id)
        self.db.commit()
        return schemas.DeliveryDetail().dump(deliveries.get(delivery_id))
