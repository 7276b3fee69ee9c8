"""
The browser client: a twisted.web site in the server's own process (``--web-port``).

Theory of operation
-------------------
* The site serves the app in ``static/`` (plain ES modules, no build step) and, at
  ``/ws``, a WebSocket over which the page speaks Spartan's own line protocol: one line
  per text message, the same commands, replies and pushes as on the native port.
* The WebSocket is a thin adapter (`spartan.web.socket`): each WebSocket gets a native
  protocol from the native factory, so limits, batching, the flood guard and the
  slow-reader drop are the native port's own.  The browser is a third front end, not a
  second server.
* Security: the WebSocket handshake is refused unless its Origin is this site or one
  given with ``--web-origin``; every response carries a Content-Security-Policy that
  allows only the site's own scripts, styles and WebSocket; static files come only from
  inside ``static/`` (`spartan.web.site`).  Passwords travel only in ``LOGIN`` over the
  WebSocket, and a reload logs in again with a session token (`spartan.core.tokens`).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_origin(text: str) -> str:
    """``https://chat.example.org[:port]`` as browsers send it in Origin, or ValueError."""
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin like https://chat.example.org[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin: scheme, host and port only")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def web_site(native_factory, origins=(), require_passwords: bool = False):
    """The `Site` for ``--web-port``: the app, and the WebSocket at ``/ws``."""
    from spartan.web.site import make_site  # autobahn is imported only when it is used

    return make_site(native_factory, origins, require_passwords)
