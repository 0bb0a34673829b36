"""Actions from the console on a real lab host: push install from a row's action menu, watched to the end in the
progress view; then diagnostics (a task, followed to its end) with each check's result and the log downloaded."""
import pytest
from playwright.sync_api import expect

from tests.console.conftest import screenshot, sign_in
from tests.lab import lab_host


@pytest.fixture
def lab():
    with lab_host() as host:
        yield host


@pytest.mark.timeout(600)
def test_push_install_from_the_menu_then_diagnostics_and_its_log(page, users, rpc, lab, rabbitmq_management):
    server = rpc.call("inventory", "create_server", users, {
        "name": f"lab-{lab.tag}", "address": lab.address, "os": "ubuntu", "runtime": "process",
        "ssh_password": lab.root_password})
    sign_in(page)
    row = page.locator(f"tr[data-server='{server['id']}']")
    row.click(button="right")
    page.get_by_role("menuitem").get_by_role("button", name="Push install").click()

    expect(page.get_by_role("heading", name=f"Push install: lab-{lab.tag}")).to_be_visible()
    expect(page.locator(".task-state .state")).to_have_attribute("data-state", "succeeded", timeout=400_000)
    steps = page.locator(".step-log li")
    count = steps.count()
    assert count > 3
    expect(page.locator(".step-of")).to_contain_text(f"Step {count} of {count}")
    expect(steps.locator(".state[data-state=succeeded]")).to_have_count(count)
    screenshot(page, "push-install")

    page.get_by_role("link", name=f"lab-{lab.tag}").click()
    page.get_by_role("link", name="Services").click()
    expect(page.locator("table.list .state[data-state=running]")).to_have_count(3)  # dns, dhcp, monitor
    screenshot(page, "server-services")
    page.get_by_role("link", name="Tasks").click()
    install = page.locator("tr[data-task]", has=page.get_by_role("link", name="install", exact=True))
    expect(install.locator(".state")).to_have_attribute("data-state", "succeeded")  # the install, kept in history
    page.get_by_role("button", name="Diagnostics").click()
    expect(page.get_by_role("heading", name=f"Diagnostics: lab-{lab.tag}")).to_be_visible(timeout=120_000)
    # A task: the page follows it check by check; the agent's broker check fails here, so the run does.
    expect(page.locator(".task-state .state")).to_have_attribute("data-state", "failed", timeout=120_000)
    for check in ("ssh", "runtime"):  # the agent's broker check fails here: lab hosts reach no broker
        expect(page.locator(f"tr[data-check={check}] .state")).to_have_attribute("data-state", "passed")
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download Log File").click()
    log = downloading.value.path().read_text()
    assert "[passed] runtime" in log and "[passed] ssh" in log, log
    screenshot(page, "diagnostics")
