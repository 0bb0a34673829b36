"""What an operator does in the console, in a real browser: sign in, the live list, the add-server wizard,
the role rules, an expired session, the admin settings."""
import re

import requests
from playwright.sync_api import expect
from sqlalchemy import text

from tests.conftest import agent_token
from tests.console.conftest import PASSWORD, screenshot, sign_in
from tests.monitoring.helpers import message

NASTY = "<script>window.pwned=1</script><img src=x onerror=window.pwned=1>"


def _server(rpc, admin, name, address="127.0.0.1"):
    return rpc.call("inventory", "create_server", admin, {"name": name, "address": address, "os": "ubuntu"})


def test_the_list_shows_heartbeats_and_state_live_and_names_as_text(page, console_url, users, rpc, monitoring):
    server = _server(rpc, users, "dns-live-1")
    _server(rpc, users, NASTY)
    sign_in(page)
    row = page.locator(f"tr[data-server='{server['id']}']")
    expect(row.locator(".requests")).to_have_attribute("data-status", "red")
    expect(row.locator(".state")).to_have_attribute("data-state", "unknown")
    expect(page.get_by_text(NASTY)).to_be_visible()  # the markup is the name's text, not elements
    expect(page.get_by_role("status")).to_have_count(0)  # every service answers /healthz: no banner
    assert page.evaluate("window.pwned") is None
    page.evaluate("window.notReloaded = true")

    # Each poll asks for fresh liveness columns, not the few seconds' cache other API clients get.
    page.evaluate("""() => {
      const send = window.fetch;
      window.listAsked = [];
      window.fetch = (url, init) => {
        if (String(url).includes("/api/v2/servers?")) window.listAsked.push(init.headers["Cache-Control"]);
        return send(url, init);
      };
    }""")
    page.wait_for_function("() => window.listAsked.length > 0")
    assert set(page.evaluate("window.listAsked")) == {"max-age=0"}

    agent = {"Authorization": f"Bearer {agent_token(rpc, server['id'])}"}
    for seq in range(1, 6):
        answer = requests.post(f"{console_url}/api/v2/monitoring/heartbeat", json=message("heartbeat", server["id"], seq),
                               headers=agent, timeout=10)
        assert answer.status_code == 202, answer.text
    expect(row.locator(".requests")).to_have_attribute("data-status", "green")
    # The heartbeats stopped: monitoring-ingest (down after 1 s here) marks it down, and the list follows.
    expect(row.locator(".state")).to_have_attribute("data-state", "down")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "servers-list")


def test_search_sort_and_paging(page, users, rpc):
    for n in range(12):
        _server(rpc, users, f"pager-{n:02d}")
    sign_in(page)
    page.get_by_label("Items per page").select_option("10")
    expect(page.get_by_text("Page 1 of 2 (12 servers)")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_role("button", name=re.compile("^Name")).click()  # descending now
    expect(page.locator("tbody tr").first).to_contain_text("pager-01")
    page.get_by_label("Search").fill("pager-07")
    expect(page.locator("tbody tr")).to_have_count(1)


def test_the_wizard_shows_the_apis_field_error_then_adds_the_server(page, users):
    sign_in(page, "operator")
    page.get_by_role("button", name="Add server").click()
    page.get_by_label("Name").fill("dns-wizard-1")
    page.get_by_label("Address (FQDN or IP)").fill("not an address!")
    for _ in range(4):
        page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Step 5 of 5: Review")).to_be_visible()
    page.get_by_role("button", name="Add server").click()
    # The API refused the address: the wizard is back at step 1 with the message beside the field.
    expect(page.get_by_text("Step 1 of 5")).to_be_visible()
    expect(page.locator(".field-error[data-field=address]")).to_be_visible()
    page.get_by_label("Address (FQDN or IP)").fill("192.0.2.53")
    page.get_by_role("button", name="3. SSH credentials").click()
    page.get_by_label("SSH password").fill("secret-pw")
    page.get_by_role("button", name="5. Review").click()
    page.get_by_role("button", name="Add server").click()
    expect(page.get_by_role("heading", name=re.compile("dns-wizard-1"))).to_be_visible()
    screenshot(page, "server-details")
    page.get_by_role("link", name="Managed Servers").click()
    expect(page.get_by_role("link", name="dns-wizard-1")).to_be_visible()


def test_a_viewer_sees_no_mutating_buttons(page, users, rpc):
    server = _server(rpc, users, "dns-viewer-1")
    sign_in(page, "viewer")
    expect(page.get_by_role("link", name="dns-viewer-1")).to_be_visible()
    assert page.get_by_role("button", name="Add server").count() == 0
    assert page.locator("button.gear").count() == 0
    page.locator("tr[data-server]").first.click(button="right")
    assert page.locator(".menu").count() == 0
    page.goto(f"/#/servers/{server['id']}")
    expect(page.get_by_label("Name")).to_be_disabled()
    for action in ("Push install", "Push update", "Diagnostics", "Delete", "Save Changes"):
        assert page.get_by_role("button", name=action).count() == 0, action
    assert page.locator("header").get_by_role("link", name="Settings").count() == 0  # admin settings


def test_an_expired_session_signs_in_again_and_returns_to_the_page(page, users, rpc, engine):
    server = _server(rpc, users, "dns-expired-1")
    sign_in(page)
    page.goto(f"/#/servers/{server['id']}/services")
    expect(page.get_by_role("heading", name=re.compile("dns-expired-1"))).to_be_visible()
    with engine.begin() as connection:
        connection.execute(text("UPDATE inventory.api_tokens SET expires_at = now() WHERE scope = 'session'"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()  # the next poll was refused
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=re.compile("dns-expired-1"))).to_be_visible()
    assert page.url.endswith(f"#/servers/{server['id']}/services")


def test_a_wrong_password_is_refused_with_the_apis_message(page, users):
    page.goto("/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")


def test_settings_save_in_place_and_test_credentials(page, users, rpc):
    sign_in(page)
    page.get_by_role("link", name="Settings").click()
    monitoring = page.locator("form[data-module=monitoring]")
    monitoring.get_by_label("raw retention minutes").fill("720")
    monitoring.get_by_role("button", name="Save Changes").click()
    expect(monitoring.get_by_role("status")).to_have_text("Saved.")
    assert rpc.call("inventory", "get_settings", users)["monitoring"]["raw_retention_minutes"] == 720
    monitoring.get_by_label("raw retention minutes").fill("0")
    monitoring.get_by_role("button", name="Save Changes").click()
    expect(monitoring.locator(".field-error[data-field=raw_retention_minutes]")).to_be_visible()

    rabbitmq = page.locator("form[data-module=rabbitmq]")
    rabbitmq.get_by_label("password").fill("guest")
    rabbitmq.get_by_role("button", name="Test Credentials").click()
    expect(rabbitmq.locator(".test-result")).to_contain_text("Connected")
    rabbitmq.get_by_label("password").fill("wrong-password")
    rabbitmq.get_by_role("button", name="Test Credentials").click()
    expect(rabbitmq.locator(".test-result")).to_contain_text("Failed")
    screenshot(page, "settings")


def test_every_page_renders_for_an_admin(page, users, rpc):
    server = _server(rpc, users, "dns-pages-1")
    sign_in(page)
    for tab in ("monitoring", "rps", "tasks"):
        page.goto(f"/#/servers/{server['id']}/{tab}")
        expect(page.locator(".tabs a.current")).to_have_text(tab.upper() if tab == "rps" else tab.capitalize())
        if tab == "monitoring":
            expect(page.locator(".chart .u-title")).to_have_count(6)  # uPlot drew every chart
            screenshot(page, "server-monitoring")
    screenshot(page, "server-tasks")
    for path, heading in (("users", "Users"), ("notifications", "Channels"), ("rollouts", "Rollouts")):
        page.goto(f"/#/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        screenshot(page, path)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_service_that_stops_is_named_while_the_page_keeps_working(page, users, rpc, every_service,
                                                                     start_console_service):
    from services.backup.service import BackupService

    _server(rpc, users, "dns-banner-1")
    sign_in(page)
    every_service["backup"].stop()
    try:
        expect(page.get_by_role("status")).to_contain_text("backup", timeout=60_000)  # from /healthz
        page.get_by_label("Search").fill("banner")
        expect(page.locator("tbody tr")).to_have_count(1)  # the list still answers
    finally:
        every_service["backup"] = start_console_service(BackupService)
    expect(page.get_by_role("status")).to_have_count(0, timeout=60_000)


def test_a_module_that_does_not_arrive_is_fetched_again(page, users):
    """A network change on the machine makes Chromium abort the requests in flight (ERR_NETWORK_CHANGED: seen
    in CI while other tests made network namespaces), and one lost module fails the whole module graph: the
    page starts again (gateway/console/boot.js) instead of saying "Loading" for ever."""
    lost = []

    def lose_the_first(route):
        if lost:
            route.continue_()
        else:
            lost.append(route.request.url)
            route.abort("connectionreset")

    page.route("**/console/static/pages/actions.js", lose_the_first)
    sign_in(page)
    assert len(lost) == 1 and lost[0].endswith("/console/static/pages/actions.js")
