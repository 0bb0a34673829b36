import pytest

from shared.crypto import SecretBox, token_hash
from shared.schemas.fields import holds_secrets, seal_secrets
from shared.schemas.notifier import ChannelCreate
from shared.schemas.servers import ServerCreate
from shared.schemas.settings import AdminSettings


def test_sealed_secret_opens_with_the_same_key_only():
    sealed = SecretBox("key-one").seal("hunter2")
    assert "hunter2" not in sealed
    assert SecretBox("key-one").open(sealed) == "hunter2"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox("key-two").open(sealed)


def test_none_stays_none():
    box = SecretBox("k")
    assert box.seal(None) is None and box.open(None) is None


def test_token_hash_is_stable_and_not_the_token():
    assert token_hash("abc") == token_hash("abc")
    assert token_hash("abc") != "abc" and len(token_hash("abc")) == 64


def test_a_value_sealed_for_the_broker_opens_for_its_purpose_only():
    box = SecretBox("key-one")
    envelope = box.seal_for("ssh.password", "hunter2")
    assert set(envelope) == {"sealed", "purpose"} and "hunter2" not in str(envelope)
    assert SecretBox("key-one").open_sealed("ssh.password", envelope) == "hunter2"
    with pytest.raises(ValueError, match="expected a secret sealed for api_token"):
        box.open_sealed("api_token", envelope)
    with pytest.raises(ValueError, match="cannot be opened"):  # relabelled on the way: the label is in the key
        box.open_sealed("api_token", dict(envelope, purpose="api_token"))
    with pytest.raises(ValueError, match="cannot be opened"):
        SecretBox("key-two").open_sealed("ssh.password", envelope)
    with pytest.raises(ValueError):  # plain text where a sealed value belongs
        box.open_sealed("ssh.password", "hunter2")
    with pytest.raises(ValueError):  # the key at rest is another key
        box.open(envelope["sealed"])
    assert box.seal_for("ssh.password", None) is None and box.open_sealed("ssh.password", None) is None


def test_the_gateway_seals_secret_fields_and_a_service_opens_each_at_its_own_place_only():
    box = SecretBox("k")
    body = {"name": "dns-1", "ssh_password": "hunter2", "ssh_port": 22}
    sealed = seal_secrets(box, ServerCreate(), body)
    assert sealed["ssh_password"]["purpose"] == "input:ssh_password" and "hunter2" not in str(sealed)
    assert sealed["name"] == "dns-1" and body["ssh_password"] == "hunter2"  # the caller's body is left alone
    assert box.open_inputs(sealed) == body

    patch = seal_secrets(box, AdminSettings(), {"rabbitmq": {"password": "r", "user": "u"},
                                                "update": {"repository_tokens": {"dns": "t"}}})
    assert patch["update"]["repository_tokens"]["dns"]["purpose"] == "input:update.repository_tokens.dns"
    assert box.open_inputs(patch) == {"rabbitmq": {"password": "r", "user": "u"},
                                      "update": {"repository_tokens": {"dns": "t"}}}

    channel = seal_secrets(box, ChannelCreate(), {"kind": "webhook", "settings": {"url": "http://x", "secret": "s" * 16}})
    assert {key: value["purpose"] for key, value in channel["settings"].items()} == {
        "url": "input:settings.url", "secret": "input:settings.secret"}

    # Moved to a field that is shown back, an envelope stays sealed (and the schema refuses a dict there).
    moved = {"name": sealed["ssh_password"]}
    assert box.open_inputs(moved) == moved
    assert seal_secrets(box, ServerCreate(), {"ssh_password": 7}) == {"ssh_password": 7}


def test_only_bodies_that_can_hold_a_secret_are_walked():
    from shared.schemas.agent import Heartbeat
    from shared.schemas.notifier import ChannelUpdate

    assert holds_secrets(ServerCreate()) and holds_secrets(AdminSettings()) and holds_secrets(ChannelUpdate())
    assert not holds_secrets(Heartbeat())
