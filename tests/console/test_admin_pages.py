"""The console's notification channels and rules (add, edit, delete), a user's own password change, and the
sign-in limit, in a real browser against the real gateway and services."""
from playwright.sync_api import expect

from tests.console.conftest import PASSWORD, screenshot, sign_in

NEW_PASSWORD = "a brand new password"


def test_an_admin_adds_edits_and_deletes_a_channel_and_a_rule(page, users, rpc):
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmations
    sign_in(page)
    page.get_by_role("link", name="Notifications").click()
    page.get_by_role("button", name="Add channel").click()
    form = page.locator("form.channel-form")
    form.get_by_label("Channel name").fill("ops-hook")
    form.get_by_label("Kind").select_option("webhook")
    form.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    form.get_by_label("Signing secret").fill("too short")
    form.get_by_role("button", name="Add channel").click()
    expect(form.locator(".field-error[data-field=secret]")).to_be_visible()  # the API's error, beside its field
    form.get_by_label("Signing secret").fill("a signing secret of some length")
    form.get_by_role("button", name="Add channel").click()
    row = page.locator("table.channels tbody tr", has_text="ops-hook")
    expect(row).to_contain_text("webhook")
    [channel] = rpc.call("notifier", "list_channels", users)
    assert channel["settings"] == {"url": "http://127.0.0.1:9/hook", "secret_set": True}

    row.get_by_role("button", name="Edit").click()
    form = page.locator(f"form.channel-form[data-channel='{channel['id']}']")
    expect(form.get_by_label("Signing secret")).to_have_value("")  # a secret is never shown
    form.get_by_label("Channel name").fill("ops-hook-2")
    form.get_by_label("Enabled").uncheck()
    form.get_by_role("button", name="Save channel").click()
    expect(page.locator("table.channels tbody tr", has_text="ops-hook-2")).to_contain_text("no")
    changed = rpc.call("notifier", "get_channel", users, channel["id"])
    assert changed["name"] == "ops-hook-2" and changed["enabled"] is False
    assert changed["settings"]["secret_set"] is True  # left empty on the edit: kept

    page.get_by_role("button", name="Add rule").click()
    form = page.locator("form.rule-form")
    form.get_by_label("Rule name").fill("disk alarms")
    form.get_by_label("disk_low", exact=True).check()  # not backup_disk_low
    form.get_by_label("Minimum severity").select_option("critical")
    form.get_by_role("button", name="Add rule").click()
    expect(form.locator(".field-error[data-field=channel_ids]")).to_be_visible()  # no channel chosen
    form.get_by_label("ops-hook-2").check()
    form.get_by_role("button", name="Add rule").click()
    rule_row = page.locator("table.rules tbody tr", has_text="disk alarms")
    expect(rule_row).to_contain_text("disk_low")
    expect(rule_row).to_contain_text("ops-hook-2")
    [rule] = rpc.call("notifier", "list_rules", users)
    assert (rule["event_types"], rule["min_severity"], rule["channel_ids"]) == (["disk_low"], "critical", [channel["id"]])
    screenshot(page, "notifications-edit")

    rule_row.get_by_role("button", name="Edit").click()
    form = page.locator(f"form.rule-form[data-rule='{rule['id']}']")
    form.get_by_label("Minimum severity").select_option("warning")
    form.get_by_label("Only servers whose name contains").fill("dns-")
    form.get_by_role("button", name="Save rule").click()
    expect(rule_row).to_contain_text("warning")
    assert rpc.call("notifier", "get_rule", users, rule["id"])["server_search"] == "dns-"

    rule_row.get_by_role("button", name="Delete").click()
    expect(page.locator("table.rules tbody tr")).to_have_count(0)
    page.locator("table.channels tbody tr", has_text="ops-hook-2").get_by_role("button", name="Delete").click()
    expect(page.locator("table.channels tbody tr")).to_have_count(0)
    assert rpc.call("notifier", "list_channels", users) == [] and rpc.call("notifier", "list_rules", users) == []


def test_a_viewer_sees_the_channels_but_no_buttons_that_change_them(page, users, rpc):
    rpc.call("notifier", "create_channel", users, {"name": "seen-hook", "kind": "webhook", "settings": {
        "url": "http://127.0.0.1:9/hook", "secret": "a signing secret of some length"}})
    sign_in(page, "viewer")
    page.goto("/#/notifications")
    expect(page.locator("table.channels tbody tr", has_text="seen-hook")).to_be_visible()
    for label in ("Add channel", "Add rule", "Edit", "Delete", "Send test"):
        assert page.get_by_role("button", name=label).count() == 0, label


def test_a_user_changes_their_own_password(page, users):
    sign_in(page, "viewer")
    page.get_by_role("link", name="viewer (viewer)").click()
    form = page.locator("section.password form")
    form.get_by_label("Current password").fill("not the password")
    form.locator("input[name=new_password]").fill(NEW_PASSWORD)
    form.get_by_label("New password again").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(form.locator(".field-error[data-field=current_password]")).to_have_text("wrong password")
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password again").fill("something else")
    form.get_by_role("button", name="Change password").click()
    expect(form.locator(".field-error[data-field=repeat]")).to_be_visible()
    form.get_by_label("New password again").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("status")).to_contain_text("Password changed")
    screenshot(page, "password")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("User name").fill("viewer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("viewer (viewer)")).to_be_visible()


def test_the_sign_in_page_says_when_failed_sign_ins_are_limited(page, users):
    page.goto("/")
    page.get_by_label("User name").fill("admin")
    for n in range(5):
        page.get_by_label("Password").fill(f"wrong guess {n}")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
        page.evaluate("document.querySelector('[role=alert]').remove()")  # the next answer must draw it anew
    page.get_by_label("Password").fill(PASSWORD)  # even the right password waits now
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("too many failed sign-ins")
    assert page.get_by_role("button", name="Sign out").count() == 0
