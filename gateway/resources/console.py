"""The web console: one HTML page at ``/`` and its scripts (gateway/console/), a client of ``/api/v2`` only.

Its third-party modules (htm's Preact bundle, uPlot) come from ``node_modules``, which ``make install`` fills
from package-lock.json with ``npm ci``; nothing is fetched from elsewhere at run time.
"""
from pathlib import Path

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
STATIC_PREFIX = "/console/static"
# URL below /console/vendor -> the directory of an npm package that the console imports from.
VENDOR = {"htm": NODE_MODULES / "htm" / "preact", "uplot": NODE_MODULES / "uplot" / "dist"}

# No inline script or style at all: every script is a file from here, styles too (uPlot and Preact set
# element styles through the DOM, which style-src does not govern).
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")


class ConsolePage:
    def __init__(self):
        self.page = (CONSOLE_DIR / "index.html").read_text()

    def on_get(self, req, resp):
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", POLICY)
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Cache-Control", "no-cache")
        resp.text = self.page
