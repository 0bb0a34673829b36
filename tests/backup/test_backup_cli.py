"""`steward backups ...` against the real gateway, backup service, daemon and restic, as an operator types it."""
import json

from cli.main import main


def steward(api_url, admin_token, *argv):
    return main(["--url", api_url, "--token", admin_token, *argv])


def test_run_list_verify_prune_and_delete_from_the_command_line(api_url, admin_token, backup_server, provisioner,
                                                               capsys):
    registered, _ = backup_server
    assert steward(api_url, admin_token, "backups", "servers", "list") == 0
    assert "backup-1" in capsys.readouterr().out
    assert steward(api_url, admin_token, "backups", "run", "--server", "backup-1", "--wait") == 0  # 0: it succeeded
    capsys.readouterr()
    assert steward(api_url, admin_token, "--json", "backups", "list", "--server", "backup-1") == 0
    [backup] = json.loads(capsys.readouterr().out)
    assert steward(api_url, admin_token, "backups", "verify", backup["id"], "--wait") == 0
    capsys.readouterr()
    assert steward(api_url, admin_token, "backups", "show", backup["id"]) == 0
    assert "verification" in (shown := capsys.readouterr().out) and " ok" in shown

    assert steward(api_url, admin_token, "backups", "policy", "backup-1", "--keep-last", "1") == 0
    capsys.readouterr()
    assert steward(api_url, admin_token, "backups", "prune", "--server", "backup-1", "--dry-run") == 0
    out = capsys.readouterr().out
    assert backup["id"] in out and "last 1" in out and "would remove" in out
    assert steward(api_url, admin_token, "--json", "tasks", "list", "--kind", "prune") == 0
    page = json.loads(capsys.readouterr().out)
    assert page["items"] == []  # a dry run prunes nothing, not even as a task
    # The updater is not running here: the list still answers with the others' tasks and names it.
    assert page["unavailable"] == ["updater"]
    # The policy keeps it: delete is refused with the reason, and the exit status says so.
    assert steward(api_url, admin_token, "backups", "delete", backup["id"]) == 1
    assert "kept by the retention policy (last 1)" in capsys.readouterr().err
    assert steward(api_url, admin_token, "backups", "policy", "backup-1", "--keep-last", "0") == 0
    assert steward(api_url, admin_token, "backups", "delete", backup["id"]) == 0
    assert f"backup {backup['id']} deleted" in capsys.readouterr().out


def test_bad_input_is_a_clear_message_and_a_non_zero_exit(api_url, admin_token, backup_server, capsys):
    assert steward(api_url, admin_token, "backups", "show", "0" * 32) == 1
    assert "no backup with id" in capsys.readouterr().err
    assert steward(api_url, admin_token, "backups", "run", "--server", "nope") == 1
    assert "no backup server nope" in capsys.readouterr().err
    assert steward(api_url, admin_token, "backups", "schedule", "backup-1", "--cron", "61 * * * *") == 1
    assert "minute '61' is outside 0-59" in capsys.readouterr().err
