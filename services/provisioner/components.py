"""What an install puts on a server: the component versions and the steps, read from the
bundle's own pv_install.py so the provisioner and a manual install agree on them."""
import importlib.util

from shared.config import ROOT

AGENT_DIR = ROOT / "agent"
PROVISION_DIR = AGENT_DIR / "provision"
INSTALLABLE = ("dns", "dhcp", "monitor")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pv_install = _load("steward_pv_install", PROVISION_DIR / "pv_install.py")


def agent_version():
    return _load("steward_agent_package", AGENT_DIR / "__init__.py").AGENT_VERSION


def default_versions():
    """The versions a first install runs (the updater moves them on later).

    knotd 3.2.6 and kea-dhcp4 2.2.0 are what Debian 12 ships, so the process runtime
    and the docker images run the same versions.
    """
    return {"dns": "3.2.6", "dhcp": "2.2.0", "monitor": agent_version()}


# The provisioner's own steps around pv_install.py's; one list, so "step k of N" is known up front.
BEFORE = ("build_bundle", "connect", "upload", "extract", "install_python3")
AFTER = ("record_state",)


def install_steps():
    """[(name, needs root)] of a push install, in order."""
    return (
        [(name, False) for name in BEFORE]
        + [(name, root) for name, root in pv_install.STEPS]
        + [(name, False) for name in AFTER]
    )
