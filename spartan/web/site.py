"""
The web site: the app's static files, its settings, and the WebSocket, on one `Site`.

* Every response carries a Content-Security-Policy that allows scripts, styles and
  connections from this site only (no inline script, no other origin), and headers that
  stop content sniffing, framing and referrers.
* Static files come from ``static/`` only: twisted.web's `File` refuses ``..`` and a
  segment holding a ``/`` (also when sent encoded, ``%2e%2e%2f``) as `InsecurePath`, and
  directory listings are turned off.  Files are revalidated on each use (``no-cache`` with
  Last-Modified): no build step stamps file names, so an upgrade must show at once.
* ``/config.json`` tells the page what it cannot guess: the longest line the server takes
  (so that it splits long messages instead of having them refused), the flood guard's
  rate and burst (so that it paces a long paste instead of being cut off) and whether
  every user needs a password.
"""

from __future__ import annotations

import json
from pathlib import Path

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

from spartan.web.socket import LineSocketFactory

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class StaticFiles(File):
    """The app's folder: no listings, revalidated on each use."""

    contentTypes = {
        **File.contentTypes,
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }

    def directoryListing(self):
        return self.childNotFound

    def render(self, request):
        request.setHeader(b"cache-control", b"no-cache")
        return super().render(request)


class Settings(Resource):
    isLeaf = True

    def __init__(self, settings: dict) -> None:
        super().__init__()
        self.body = json.dumps(settings).encode()

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return self.body


class WebSite(Site):
    noisy = False

    def getResourceFor(self, request):
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        return super().getResourceFor(request)


def make_site(native_factory, origins=(), require_passwords: bool = False) -> WebSite:
    root = StaticFiles(str(STATIC))
    root.putChild(b"ws", WebSocketResource(LineSocketFactory(native_factory, origins)))
    rate = native_factory.limits.rate
    settings = {
        "maxLine": native_factory.max_line,
        "requirePasswords": bool(require_passwords),
        "rate": rate.rate,  # so that the page paces a long paste instead of being dropped
        "burst": rate.burst,
    }
    root.putChild(b"config.json", Settings(settings))
    return WebSite(root)
