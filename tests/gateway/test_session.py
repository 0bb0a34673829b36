"""Web console sign-in through the real app and inventory: passwords, the session cookie, CSRF, sign-out; bearer
tokens unchanged; and the console's page with its Content-Security-Policy."""
from gateway.routes import PREFIX

PASSWORD = "a long enough password"


def _sign_in(client, name, password=PASSWORD):
    return client.simulate_post(f"{PREFIX}/session", json={"name": name, "password": password})


def _cookie(answer):
    return {"Cookie": f"steward_session={answer.cookies['steward_session'].value}"}


def test_a_user_with_a_password_signs_in_and_changes_only_with_the_csrf_token(client, auth, engine):
    created = client.simulate_post(f"{PREFIX}/users", headers=auth,
                                   json={"name": "ada", "role": "admin", "password": PASSWORD})
    assert created.status_code == 201 and created.json["password_set"] is True
    assert PASSWORD not in created.text and "argon2" not in created.text

    signed_in = _sign_in(client, "ada")
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.cookies["steward_session"]
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert cookie.value not in signed_in.text  # the page's scripts never see the session's secret
    assert signed_in.json["user"]["name"] == "ada" and signed_in.json["user"]["role"] == "admin"
    csrf = signed_in.json["csrf_token"]

    session = _cookie(signed_in)
    assert client.simulate_get(f"{PREFIX}/servers", headers=session).status_code == 200
    assert client.simulate_get(f"{PREFIX}/session", headers=session).json["csrf_token"] == csrf
    change = {"monitoring": {"raw_retention_minutes": 600}}
    refused = client.simulate_patch(f"{PREFIX}/settings", headers=session, json=change)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json["message"]
    forged = client.simulate_patch(f"{PREFIX}/settings", headers=dict(session, **{"X-CSRF-Token": "0" * 64}),
                                   json=change)
    assert forged.status_code == 403
    done = client.simulate_patch(f"{PREFIX}/settings", headers=dict(session, **{"X-CSRF-Token": csrf}), json=change)
    assert done.status_code == 200 and done.json["monitoring"]["raw_retention_minutes"] == 600
    # The role rules stay the API's: the cookie is the user, no more.
    assert client.simulate_get(f"{PREFIX}/users", headers=session).status_code == 200

    # Bearer tokens work as before, and a bearer request needs no CSRF token.
    assert client.simulate_patch(f"{PREFIX}/settings", headers=auth, json=change).status_code == 200
    assert client.simulate_get(f"{PREFIX}/session", headers=auth).json["csrf_token"] is None

    out = client.simulate_delete(f"{PREFIX}/session", headers=dict(session, **{"X-CSRF-Token": csrf}))
    assert out.status_code == 204 and out.cookies["steward_session"].value == ""
    after = client.simulate_get(f"{PREFIX}/servers", headers=session)
    assert after.status_code == 401 and after.json["error"] == "not_authenticated"


def test_wrong_passwords_unknown_users_and_users_without_one_get_the_same_answer(client, auth):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "bob", "password": PASSWORD})
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "tokens-only"})
    for name, password in (("bob", "wrong password"), ("nobody", PASSWORD), ("tokens-only", PASSWORD)):
        answer = _sign_in(client, name, password)
        assert answer.status_code == 401 and answer.json["message"] == "wrong user name or password", name
        assert "steward_session" not in answer.cookies
    short = client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "carl", "password": "short"})
    assert short.status_code == 400 and "password" in short.json["details"]
    missing = client.simulate_post(f"{PREFIX}/session", json={"name": "bob"})
    assert missing.status_code == 400 and "password" in missing.json["details"]


def test_a_session_ends_when_it_expires(client, auth, engine):
    from sqlalchemy import text

    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "eve", "password": PASSWORD})
    session = _cookie(_sign_in(client, "eve"))
    assert client.simulate_get(f"{PREFIX}/servers", headers=session).status_code == 200
    with engine.begin() as connection:
        connection.execute(text("UPDATE inventory.api_tokens SET expires_at = now() WHERE scope = 'session'"))
    assert client.simulate_get(f"{PREFIX}/servers", headers=session).status_code == 401


def test_the_console_page_runs_only_its_own_scripts(client):
    page = client.simulate_get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    scripts = policy.split("script-src")[1].split(";")[0]
    assert scripts.strip() == "'self'" and "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text  # no inline script at all: only <script src=...>
    for asset in ("/console/static/app.js", "/console/vendor/htm/standalone.module.js",
                  "/console/vendor/uplot/uPlot.esm.js"):
        answer = client.simulate_get(asset)
        assert answer.status_code == 200 and "javascript" in answer.headers["content-type"], asset


def test_the_cli_gives_a_user_a_console_password_from_a_file(api_url, admin_token, capsys, tmp_path, inventory):
    import requests

    from cli import main as cli

    def steward(*argv):
        code = cli.main(["--url", api_url, "--token", admin_token, *argv])
        return code, capsys.readouterr()

    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    assert steward("users", "create", "cli-user", "--password-file", str(secret))[0] == 0
    signed_in = requests.post(f"{api_url}{PREFIX}/session", json={"name": "cli-user", "password": PASSWORD}, timeout=10)
    assert signed_in.status_code == 200 and signed_in.cookies.get("steward_session")
    secret.write_text("another long password")
    code, output = steward("users", "modify", "cli-user", "--password-file", str(secret))
    assert code == 0 and "another" not in output.out
    assert requests.post(f"{api_url}{PREFIX}/session", json={"name": "cli-user", "password": PASSWORD},
                         timeout=10).status_code == 401
    assert requests.post(f"{api_url}{PREFIX}/session", json={"name": "cli-user", "password": "another long password"},
                         timeout=10).status_code == 200


def test_five_failed_sign_ins_for_a_name_or_from_an_address_get_429_with_retry_after(client, auth):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "dora", "password": PASSWORD})
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "finn", "password": PASSWORD})

    def attempt(name, password, address):
        return client.simulate_post(f"{PREFIX}/session", json={"name": name, "password": password},
                                    remote_addr=address)

    # Per user name: five wrong passwords from five addresses, then even the right one from a sixth is refused.
    for n in range(5):
        assert attempt("dora", "wrong password", f"127.0.1.{n + 1}").status_code == 401
    limited = attempt("dora", PASSWORD, "127.0.1.9")
    assert limited.status_code == 429 and limited.json["error"] == "too_many_attempts", limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json["details"]["retry_after_seconds"] == [limited.headers["retry-after"]]
    assert "steward_session" not in limited.cookies
    # Another user from another address is not held up.
    assert attempt("finn", PASSWORD, "127.0.2.1").status_code == 200

    # Per address: five failures for five names (unknown ones too) from one address, then finn is refused there.
    for n in range(5):
        assert attempt(f"guess{n}", "wrong password", "127.0.3.1").status_code == 401
    assert attempt("finn", PASSWORD, "127.0.3.1").status_code == 429
    assert attempt("finn", PASSWORD, "127.0.3.2").status_code == 200


def test_a_user_changes_their_own_password_given_the_current_one(client, auth):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "gus", "role": "viewer", "password": PASSWORD})
    first, second = _sign_in(client, "gus"), _sign_in(client, "gus")
    headers = dict(_cookie(first), **{"X-CSRF-Token": first.json["csrf_token"]})
    path = f"{PREFIX}/session/password"

    wrong = client.simulate_post(path, headers=headers, json={"current_password": "not it at all",
                                                              "new_password": "a new long password"})
    assert wrong.status_code == 400 and "current_password" in wrong.json["details"], wrong.text
    short = client.simulate_post(path, headers=headers, json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "new_password" in short.json["details"]
    assert _sign_in(client, "gus").status_code == 200  # nothing changed yet

    changed = client.simulate_post(path, headers=headers, json={"current_password": PASSWORD,
                                                                "new_password": "a new long password"})
    assert changed.status_code == 200 and changed.json["name"] == "gus", changed.text
    assert "a new long password" not in changed.text
    assert _sign_in(client, "gus").status_code == 401
    assert _sign_in(client, "gus", "a new long password").status_code == 200
    # The session that changed it goes on; the user's other sessions end.
    assert client.simulate_get(f"{PREFIX}/servers", headers=_cookie(first)).status_code == 200
    assert client.simulate_get(f"{PREFIX}/servers", headers=_cookie(second)).status_code == 401


def test_wrong_current_passwords_count_toward_the_sign_in_limit(client, auth):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "hal", "password": PASSWORD})
    signed_in = _sign_in(client, "hal")
    headers = dict(_cookie(signed_in), **{"X-CSRF-Token": signed_in.json["csrf_token"]})
    for n in range(5):
        answer = client.simulate_post(f"{PREFIX}/session/password", headers=headers, remote_addr=f"127.0.4.{n + 1}",
                                      json={"current_password": f"guess number {n}", "new_password": "whatever it is"})
        assert answer.status_code == 400
    assert _sign_in(client, "hal").status_code == 429
