"""Channels: where notifications go. Settings are validated per kind; the one
secret of each kind is sealed at rest and never shown."""
import time

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.notifier.models import Channel
from services.notifier.exceptions import DeliveryFailed
from services.notifier.transports import Message, chat_payload, send
from shared.errors import ChannelNotFound, DuplicateName, ValidationFailed
from shared.schemas import load_or_raise
from shared.schemas.notifier import CHANNEL_SECRET, CHANNEL_SETTINGS

TEST_SUBJECT = "[Steward] Test message"


class Channels:
    def __init__(self, session, secrets, clock=time.time):
        self.session = session
        self.secrets = secrets
        self.clock = clock

    def list(self):
        return self.session.scalars(select(Channel).order_by(Channel.id)).all()

    def get(self, channel_id):
        channel = self.session.get(Channel, channel_id)
        if channel is None:
            raise ChannelNotFound(f"no channel {channel_id}")
        return channel

    def create(self, data):
        channel = Channel(name=data["name"], kind=data["kind"], enabled=data["enabled"])
        self._apply_settings(channel, data["settings"])
        self.session.add(channel)
        flush_unique(self.session, "channel", channel.name)
        return channel

    def update(self, channel_id, changes):
        channel = self.get(channel_id)
        if "name" in changes:
            channel.name = changes["name"]
        if "enabled" in changes:
            channel.enabled = changes["enabled"]
        if "settings" in changes:
            # A change names what it changes: the stored settings (and secret) fill the rest.
            self._apply_settings(channel, dict(channel.settings, **changes["settings"]))
        channel.updated_at = func.now()
        flush_unique(self.session, "channel", channel.name)
        return channel

    def delete(self, channel_id):
        self.session.delete(self.get(channel_id))

    def secret(self, channel):
        return self.secrets.open(channel.secret_sealed)

    def send_test(self, channel_id):
        channel = self.get(channel_id)
        kind, settings, secret = channel.kind, channel.settings, self.secret(channel)
        message = Message(None, TEST_SUBJECT,
                          f"This is a test message from Steward's notification channel {channel.name!r}.\n"
                          "If you can read it, the channel works; nothing else to do.")
        self.session.rollback()  # hold no connection during the (slow) network call
        started = time.perf_counter()
        try:
            result, ok = send(kind, settings, secret, message, clock=self.clock), True
        except DeliveryFailed as exc:
            result, ok = str(exc), False
        return {"ok": ok, "message": result, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    def _apply_settings(self, channel, given):
        secret_field = CHANNEL_SECRET[channel.kind]
        given = {k: v for k, v in given.items() if not k.endswith("_set")}
        if secret_field not in given and channel.secret_sealed is not None:
            # Validate as if the stored secret were given again, without opening it.
            given[secret_field] = self.secrets.open(channel.secret_sealed)
        settings = load_or_raise(CHANNEL_SETTINGS[channel.kind](), given, f"{channel.kind} channel settings")
        if channel.kind == "chat":
            try:
                chat_payload(settings.get("payload_template"), "test")
            except DeliveryFailed as exc:
                raise ValidationFailed("invalid chat channel settings", {"payload_template": [str(exc)]}) from None
        secret = settings.pop(secret_field, None)
        channel.secret_sealed = self.secrets.seal(secret)
        channel.settings = settings


def flush_unique(session, what, name):
    """Flush; a taken name (channels and rules have unique names) becomes a typed 409."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise DuplicateName(f"a {what} named {name!r} exists", {"name": ["already in use"]}) from None


def channel_dict(channel):
    settings = dict(channel.settings)
    settings[f"{CHANNEL_SECRET[channel.kind]}_set"] = channel.secret_sealed is not None
    return {"id": channel.id, "name": channel.name, "kind": channel.kind, "enabled": channel.enabled,
            "settings": settings, "created_at": channel.created_at, "updated_at": channel.updated_at}
