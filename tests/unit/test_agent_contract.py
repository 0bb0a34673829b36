"""The agent ships alone in the setup bundle (standard library + pika) and cannot import
shared/: these are the facts it keeps its own copy of, held to the control plane's."""
import agent
from agent import config as agent_config
from agent import push
from agent.provision import pv_install, pv_update
from shared.components import BUNDLED, COMPONENTS, INSTALLABLE
from shared.schemas import agent as protocol


def test_the_agent_publishes_to_the_exchange_and_keys_the_control_plane_consumes():
    assert push.EXCHANGE == protocol.EXCHANGE
    for kind in ("system", "dns"):
        assert push.routing_key({"kind": kind, "server_id": 7}) == protocol.stats_routing_key(kind, 7)


def test_the_agent_speaks_the_protocol_version_and_pull_port_of_the_control_plane():
    assert agent.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert agent_config.DEFAULTS["pull_port"] == protocol.PULL_PORT


def test_the_bundle_scripts_install_and_update_the_installable_components():
    assert tuple(pv_install.COMPONENTS) == BUNDLED
    assert tuple(pv_update.COMPONENTS) == INSTALLABLE
    assert set(INSTALLABLE) <= set(COMPONENTS)
