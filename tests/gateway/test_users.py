"""GET, PATCH and DELETE /users/{id} through the real app and inventory: admins only (a user may read
their own), bad input a 400 that changes nothing, and a deleted user's tokens stop working."""
from gateway.routes import PREFIX


def _refused(response, status, code):
    assert response.status_code == status, response.text
    assert response.json["error"] == code and response.json["message"] and isinstance(response.json["details"], dict)
    return response.json


def test_users_are_shown_changed_and_deleted_by_admins_only(client, auth):
    created = client.simulate_post(f"{PREFIX}/users", json={"name": "vera", "role": "viewer"}, headers=auth)
    assert created.status_code == 201, created.text
    vera_id = created.json["id"]
    vera = {"Authorization": f"Bearer {client.simulate_post(f'{PREFIX}/tokens', json={'user': 'vera'}, headers=auth).json['token']}"}
    admin_id = next(u["id"] for u in client.simulate_get(f"{PREFIX}/users", headers=auth).json if u["name"] == "admin")

    shown = client.simulate_get(f"{PREFIX}/users/{vera_id}", headers=auth)
    assert shown.status_code == 200 and (shown.json["name"], shown.json["role"]) == ("vera", "viewer")
    assert client.simulate_get(f"{PREFIX}/users/{vera_id}", headers=vera).json["name"] == "vera"  # herself
    _refused(client.simulate_get(f"{PREFIX}/users/{admin_id}", headers=vera), 403, "permission_denied")
    _refused(client.simulate_patch(f"{PREFIX}/users/{vera_id}", json={"role": "admin"}, headers=vera),
             403, "permission_denied")
    _refused(client.simulate_delete(f"{PREFIX}/users/{admin_id}", headers=vera), 403, "permission_denied")

    changed = client.simulate_patch(f"{PREFIX}/users/{vera_id}", json={"role": "operator", "groups": ["dns-team"]},
                                    headers=auth)
    assert changed.status_code == 200 and (changed.json["role"], changed.json["groups"]) == ("operator", ["dns-team"])
    assert set(_refused(client.simulate_patch(f"{PREFIX}/users/{vera_id}", json={"role": "root", "name": "v"},
                                              headers=auth), 400, "invalid_input")["details"]) == {"role", "name"}
    after = client.simulate_get(f"{PREFIX}/users/{vera_id}", headers=auth).json
    assert (after["role"], after["groups"]) == ("operator", ["dns-team"])  # the refused change changed nothing
    for method in ("GET", "PATCH", "DELETE"):
        _refused(client.simulate_request(method, f"{PREFIX}/users/999999", json={}, headers=auth), 404, "user_not_found")

    # The server user of a server cannot go while the server is there.
    server = client.simulate_post(f"{PREFIX}/servers", headers=auth, json={
        "name": "dns-vera", "address": "192.0.2.7", "os": "ubuntu", "server_user": "vera"}).json
    assert "dns-vera" in _refused(client.simulate_delete(f"{PREFIX}/users/{vera_id}", headers=auth),
                                  403, "permission_denied")["message"]
    assert client.simulate_get(f"{PREFIX}/users/{vera_id}", headers=auth).status_code == 200
    assert client.simulate_delete(f"{PREFIX}/servers/{server['id']}", headers=auth).status_code == 204

    assert client.simulate_delete(f"{PREFIX}/users/{vera_id}", headers=auth).status_code == 204
    _refused(client.simulate_get(f"{PREFIX}/users/{vera_id}", headers=auth), 404, "user_not_found")
    _refused(client.simulate_get(f"{PREFIX}/servers", headers=vera), 401, "not_authenticated")
