"""What every answer says about itself (issue 11): no type sniffing, nothing cached that was answered to a
token, the docs page in no frame and running only its own scripts, and HEAD wherever GET works."""
import base64
import hashlib
import re

from gateway.routes import PREFIX


def test_every_answer_forbids_type_sniffing_and_answers_to_a_token_are_not_cached(client, auth):
    token = client.simulate_post(f"{PREFIX}/tokens", json={"name": "ci"}, headers=auth)
    assert token.status_code == 201 and token.json["token"]
    assert token.headers["cache-control"] == "no-store" and token.headers["x-content-type-options"] == "nosniff"
    for answer in (client.simulate_get(f"{PREFIX}/servers", headers=auth),
                   client.simulate_get(f"{PREFIX}/servers"),  # 401
                   client.simulate_get(f"{PREFIX}/servers/999", headers=auth)):  # 404
        assert answer.headers["cache-control"] == "no-store", answer.status
        assert answer.headers["x-content-type-options"] == "nosniff", answer.status
    document = client.simulate_get(f"{PREFIX}/openapi.json")
    assert document.headers["x-content-type-options"] == "nosniff" and "cache-control" not in document.headers


def test_the_docs_page_is_not_framed_and_runs_only_swagger_and_its_own_script(client):
    page = client.simulate_get(f"{PREFIX}/docs")
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    inline = re.search(r"<script>(.*?)</script>", page.text, re.S)[1]
    assert "validatorUrl: null" in inline
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy  # the one inline script is allowed by its hash, and nothing else inline
    static = client.simulate_get(f"{PREFIX}/docs/static/swagger-ui-bundle.js")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"


def test_head_works_wherever_get_does_and_asks_what_get_asks(client, auth):
    for path in ("/servers", "/settings", "/users", "/tokens", "/openapi.json", "/docs"):  # inventory's, and the docs
        get = client.simulate_get(PREFIX + path, headers=auth)
        head = client.simulate_head(PREFIX + path, headers=auth)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers.get("content-type") == get.headers.get("content-type")
    assert client.simulate_head(f"{PREFIX}/servers").status_code == 401
    assert client.simulate_head(f"{PREFIX}/openapi.json").status_code == 200
    assert client.simulate_head(f"{PREFIX}/rollouts/1/actions/cancel", headers=auth).status_code == 405
