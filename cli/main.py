"""steward: manage a Steward control plane from the command line.

    steward servers list [--search TEXT] [--sort name|-name] [--filter-by state=running]
    steward servers show|create|modify|delete ...
    steward settings show|set ...
    steward tokens create|list|delete ...
    steward users list|create ...
    steward notifications channels|rules|templates|deliveries ...
    steward versions list|upload, steward servers update|update-log|diagnose, steward rollouts ...
    steward servers install|bundle NAME, steward tasks show TASK_ID [--log]
    steward monitoring system|dns|records SERVER, steward monitoring rps NAME
    steward dead-letters list|show|retry|drop, steward servers inspect NAME, steward reconcile [--fix]
    steward backups servers|policy|schedule|list|show|run|verify|restore|prune|delete ...

The API URL comes from --url, $STEWARD_URL or .steward/api-url; the token from
--token, $STEWARD_TOKEN or .steward/admin-token. --json prints raw JSON.
"""
import argparse
import sys

from cli import admin, backups, monitoring, notifications, provisioning, servers, tasks, updates
from cli.api import Api, ApiError, default_token, default_url
from cli.arguments import UsageError


def build_parser():
    parser = argparse.ArgumentParser(prog="steward", description="Manage a Steward control plane.")
    parser.add_argument("--url", default=None, help="API base URL (default: $STEWARD_URL, .steward/api-url)")
    parser.add_argument("--token", default=None, help="API token (default: $STEWARD_TOKEN, .steward/admin-token)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{servers,settings,tokens,users,versions,rollouts,notifications,tasks,monitoring,dead-letters,reconcile,backups}")
    server_commands = servers.add_commands(groups)
    admin.add_commands(groups)
    updates.add_commands(groups, server_commands)
    provisioning.add_commands(server_commands)
    tasks.add_commands(groups)
    notifications.add_commands(groups)
    monitoring.add_commands(groups)
    monitoring.add_dead_letter_commands(groups)
    backups.add_commands(groups)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    api = Api(args.url or default_url(), args.token or default_token())
    try:
        return args.func(api, args) or 0
    except ApiError as exc:
        print(exc.describe(), file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
