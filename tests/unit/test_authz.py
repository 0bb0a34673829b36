"""The authorization rules every service applies (shared/authz.py)."""
import pytest

from shared.authz import may_change, require_may_change, require_own_agent
from shared.errors import PermissionDenied

ADMIN = {"user_id": 1, "name": "root", "role": "admin", "scope": "full", "server_id": None}
OWNER = {"user_id": 2, "name": "owner", "role": "operator", "scope": "full", "server_id": None}
OTHER = {"user_id": 3, "name": "other", "role": "operator", "scope": "full", "server_id": None}
VIEWER = {"user_id": 4, "name": "watcher", "role": "viewer", "scope": "full", "server_id": None}
AGENT_OF_7 = {"user_id": None, "name": "agent:7", "role": "agent", "scope": "agent", "server_id": 7}
AGENT_OF_8 = dict(AGENT_OF_7, name="agent:8", server_id=8)
SERVER_7 = {"id": 7, "name": "dns-1", "server_user": "owner"}


@pytest.mark.parametrize("principal", [ADMIN, OWNER])
def test_the_server_user_and_admins_may_change_a_server(principal):
    require_may_change(principal, SERVER_7)
    require_may_change(principal, SERVER_7, "update", agent=True)


@pytest.mark.parametrize("principal", [OTHER, VIEWER, AGENT_OF_7, AGENT_OF_8])
def test_nobody_else_may_change_a_server(principal):
    with pytest.raises(PermissionDenied, match="may not install dns-1|only owner .the server user. or an admin "
                                               "may install dns-1"):
        require_may_change(principal, SERVER_7, "install")


def test_where_agents_may_act_a_server_s_own_agent_may_and_no_other():
    assert may_change(AGENT_OF_7, SERVER_7, agent=True)
    assert not may_change(AGENT_OF_8, SERVER_7, agent=True)
    with pytest.raises(PermissionDenied, match="only its own server"):
        require_may_change(AGENT_OF_8, SERVER_7, "update", agent=True)
    assert not may_change(OTHER, SERVER_7, agent=True)


def test_only_a_servers_own_agent_reports_for_it():
    require_own_agent(AGENT_OF_7, 7)
    with pytest.raises(PermissionDenied, match="its own server's heartbeats"):
        require_own_agent(AGENT_OF_7, 8)
    with pytest.raises(PermissionDenied, match="heartbeats come from agents"):
        require_own_agent(ADMIN, 7)
