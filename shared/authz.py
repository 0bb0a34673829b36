"""Roles, in the one order the gateway and the services agree on."""
from shared.errors import PermissionDenied

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}


def has_role(principal, role):
    return ROLE_RANK.get(principal.get("role"), -1) >= ROLE_RANK[role]


def require_role(principal, role):
    if not has_role(principal, role):
        raise PermissionDenied(f"this needs the {role} role; {principal.get('name')} is {principal.get('role')}")


def is_admin(principal):
    return principal.get("role") == "admin"
