"""Who may do what: the roles, and the rules every service (and the gateway) applies.

A principal is what inventory's ``authenticate`` answers for a token: a user
(``role`` admin, operator or viewer) or a server's agent (``scope`` agent, with
the ``server_id`` it speaks for).

Every operation that changes one managed server, or acts on it with its stored
credentials, applies one rule, ``require_may_change``: an admin, or the
server's own server user (README, Access), or, where the operation lets agents
in, that server's own agent. The route table (gateway/routes.py) says which
operations those are, and a role × route × ownership test holds each to it.
"""
from shared.errors import PermissionDenied

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
AGENT_SCOPE = "agent"


def has_role(principal, role):
    return ROLE_RANK.get(principal.get("role"), -1) >= ROLE_RANK[role]


def require_role(principal, role):
    if not has_role(principal, role):
        raise PermissionDenied(f"this needs the {role} role; {principal.get('name')} is {principal.get('role')}")


def is_admin(principal):
    return principal.get("role") == "admin"


def is_agent(principal):
    return principal.get("scope") == AGENT_SCOPE


def agent_principal(server_id):
    """Who a server's agent token speaks for: not its user, only its server (inventory answers it for such a
    token, and the gateway's copy of the agent tokens builds it the same way)."""
    return {"user_id": None, "name": f"agent:{server_id}", "role": "agent", "groups": [], "scope": AGENT_SCOPE,
            "server_id": server_id}


def may_change(principal, server, agent=False):
    """The server-user rule. ``server``: ``{"id", "name", "server_user"}`` (the server user's name);
    ``agent``: the operation also lets the server's own agent in (pv_update.py run on the server)."""
    if is_agent(principal):
        return agent and principal.get("server_id") == server["id"]
    # User names cannot hold the ':' of an agent's, so only the user itself matches.
    return is_admin(principal) or principal.get("name") == server["server_user"]


def require_may_change(principal, server, action="change", agent=False):
    if may_change(principal, server, agent):
        return
    if is_agent(principal):
        raise PermissionDenied(f"an agent token may not {action} {server['name']}"
                               + (" (only its own server)" if agent else ""))
    raise PermissionDenied(f"only {server['server_user']} (the server user) or an admin may {action} {server['name']}")


def require_own_agent(principal, server_id):
    """Agent traffic is attributed by the token, never by the body: only a server's own agent
    reports for it (its heartbeats)."""
    if not is_agent(principal):
        raise PermissionDenied("heartbeats come from agents, with their server's agent token")
    if principal.get("server_id") != server_id:
        raise PermissionDenied("an agent token may only send its own server's heartbeats")
