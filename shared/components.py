"""The components of a managed server, named once.

The API schemas, inventory's repository tokens, the provisioner, the updater and
the CLI take the lists from here. The agent's scripts cannot import them (they
ship alone in the setup bundle): tests/unit/test_agent_contract.py holds their
copies to these.
"""
# What a server record may list.
COMPONENTS = ("dns", "dhcp", "backup", "monitor")

# What the updater updates, and what a new server gets when none are named.
INSTALLABLE = ("dns", "dhcp", "monitor")

# What a setup bundle installs: those, and the backup-server daemon (agent/backup_server/),
# which ships in the bundle like the agent and is not in the updater's catalog yet.
BUNDLED = INSTALLABLE + ("backup",)
