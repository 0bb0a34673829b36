"""The web console in real headless Chromium (Debian's ``chromium``, driven by Playwright), against the real
gateway app over HTTP and the real services, broker and database."""
import os
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from playwright.sync_api import expect, sync_playwright

from gateway.app import create_app
from tests.conftest import _container_factory

CHROMIUM = os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of each main page: the test run's output (README shows two of them, copied into docs/).
SCREENSHOTS = Path(os.environ.get("STEWARD_TEST_OUTPUT", ROOT / ".steward" / "test-output")) / "console"
PASSWORD = "correct horse battery"

expect.set_options(timeout=20_000)  # a loaded 2-core machine: wait for what the page shows, never sleep


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # A page asks for its dozen modules at once; socketserver's backlog of 5 drops the rest of the connections
    # while the accepting thread waits for the CPU, and Chromium tries them again only after 1, 3, 7, 15 s.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def console_url(settings, rpc):
    """The gateway app (API and console) over real HTTP; a browser asks for several things at once."""
    server = make_server("127.0.0.1", 0, create_app(settings, rpc=rpc), server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    manager = sync_playwright()
    playwright = manager.start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield chromium
    chromium.close()
    # Playwright's stop() waits for its driver in an asyncio loop that eventlet's hub (tests/conftest.py patches
    # everything) never wakes: end the driver we started directly instead.
    manager._client._transport._proc.terminate()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item, so the ``page`` fixture knows whether the test failed."""
    report = (yield).get_result()
    setattr(item, f"report_{report.when}", report)


class RequestLog:
    """Every request the page made, when, and how it ended: printed when a test fails, so a page that waited
    (a request never answered, a script that never ran) says what it waited for."""

    def __init__(self, page):
        self.started, self.lines, self.pending = time.monotonic(), [], []
        page.on("request", lambda r: self._note("asked", r))
        page.on("requestfinished", lambda r: self._note("answered", r))
        page.on("requestfailed", lambda r: self._note(f"failed ({r.failure})", r))

    def _note(self, what, request):
        self.lines.append(f"{time.monotonic() - self.started:7.2f} s {what}: {request.method} {request.url}")
        if what == "asked":
            self.pending.append(request)
        elif request in self.pending:
            self.pending.remove(request)

    def unanswered(self):
        return [f"{request.method} {request.url}" for request in self.pending]


@pytest.fixture
def page(browser, console_url, request):
    """A fresh browser profile; the test fails on any script error the page raised (an API's refusal, which
    Chromium logs as a failed resource, is the page's to show, not an error)."""
    context = browser.new_context(base_url=console_url, viewport={"width": 1280, "height": 860},
                                  accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    requests = RequestLog(page)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"the page's requests (unanswered: {requests.unanswered()}):", *requests.lines[-60:], sep="\n")
        print("the page showed:", page.evaluate("document.body.innerText")[:2000], "errors:", errors, sep="\n")
    context.close()
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


@pytest.fixture(scope="package")
def start_console_service(settings):
    """Starts a service for the console's tests only: stopped when they end, because a replica left running for
    the session would compete for the messages of the services later tests start with settings of their own
    (an updater with its own storage, a notifier they kill)."""
    start, containers = _container_factory(settings)
    yield start
    for container in containers:
        container.stop()


@pytest.fixture(scope="package")
def every_service(inventory, provisioner, monitoring, start_console_service):  # noqa: F811 (the fixture)
    """The rest of the control plane while the console's tests run, so /healthz is ok and every page has its service."""
    from services.backup.service import BackupService
    from services.notifier.service import NotifierService
    from services.updater.service import UpdaterService

    return {service.name: start_console_service(service)
            for service in (UpdaterService, NotifierService, BackupService)}


@pytest.fixture
def users(rpc, admin, every_service):
    """An admin, an operator and a viewer who may sign in, all with PASSWORD."""
    rpc.call("inventory", "update_user", admin, admin["user_id"], {"password": PASSWORD})
    for name in ("operator", "viewer"):
        rpc.call("inventory", "create_user", admin, {"name": name, "role": name, "password": PASSWORD})
    return admin


def sign_in(page, name="admin", path="/"):
    page.goto(path)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"{name} (")).to_be_visible()


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
