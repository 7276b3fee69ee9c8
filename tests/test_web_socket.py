"""
The web front end without a browser: the site and its WebSocket on real loopback sockets,
in this process, beside a native port over the same chat core (autobahn's client speaks
WebSocket; a Twisted line client speaks the native protocol).
"""

from __future__ import annotations

import json
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import LineReceiver

from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.net.limits import RateConfig, ServerLimits
from spartan.native.protocol import NativeFactory
from spartan.store.memory import MemoryStore
from spartan.web import parse_origin, web_site
from spartan.web.site import STATIC
from tests.web_support import TIMEOUT, WebSocketLines, http_get

MAX_LINE = 200


class _NativeLines(LineReceiver):
    delimiter = b"\r\n"

    def __init__(self):
        self.lines = DeferredQueue()

    def lineReceived(self, line):
        self.lines.put(line.decode())

    async def reply(self, line: str) -> tuple[list[str], str]:
        self.sendLine(line.encode())
        pushed = []
        while True:
            received = await self.lines.get().addTimeout(TIMEOUT, reactor)
            if received.startswith(("OK", "ERR")):
                return pushed, received
            pushed.append(received)


class _Servers:
    def __init__(self, limits=None, origins=(), max_pending=1 << 20):
        self.chat = Chat(DEMO, MemoryStore(), reactor)
        self.chat.start()
        self.factory = NativeFactory(
            self.chat, max_line=MAX_LINE, max_pending=max_pending, limits=limits
        )
        self.web = reactor.listenTCP(0, web_site(self.factory, origins), interface="127.0.0.1")
        self.native = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.web_port = self.web.getHost().port
        self.sockets = []

    async def socket(self, origin="same") -> WebSocketLines:
        ws = await WebSocketLines.open(self.web_port, origin)
        self.sockets.append(ws)
        return ws

    async def logged_in(self, user: str) -> WebSocketLines:
        ws = await self.socket()
        assert (await ws.message()).startswith("* HELLO Spartan ")
        assert await ws.reply(f"LOGIN {user}") == ([], f"OK LOGIN {user}")
        return ws

    async def native_client(self, user: str) -> _NativeLines:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.native.getHost().port)
        client = await connectProtocol(endpoint, _NativeLines())
        self.sockets.append(client)
        assert (await client.lines.get()).startswith("* HELLO ")
        assert await client.reply(f"LOGIN {user}") == ([], f"OK LOGIN {user}")
        return client

    async def stop(self):
        for client in self.sockets:
            transport = getattr(client, "transport", None) or client.protocol.transport
            if transport is not None:
                transport.abortConnection()
        await self.web.stopListening()
        await self.native.stopListening()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs):
        made.append(_Servers(**kwargs))
        return made[-1]

    yield make
    for s in made:
        pytest_twisted.blockon(Deferred.fromCoroutine(s.stop()))


@pytest_twisted.ensureDeferred
async def test_a_browser_socket_chats_with_a_native_client_both_ways(servers):
    s = servers()
    alice = await s.logged_in("alice")
    bob = await s.native_client("bob")
    _, sent = await alice.reply("SEND bob hello from the web")
    assert sent.startswith("OK SENT ")
    line = await bob.lines.get()
    assert line.startswith("* MSG ") and line.endswith(" alice alice hello from the web")
    assert (await bob.reply("SEND alice and back"))[1].startswith("OK SENT ")
    pushed = await alice.message()
    assert pushed.startswith("* MSG ") and pushed.endswith(" bob bob and back")
    # Each server line is one message: an OPEN's lines come one by one, then its reply.
    assert (await alice.reply("OPEN bob"))[1] == "OK OPEN bob 1"
    pushed, reply = await alice.reply("HISTORY bob 5")
    assert [p.split(" ", 6)[5:] for p in pushed] == [
        ["alice", "hello from the web"],
        ["bob", "and back"],
    ]
    assert reply == "OK HISTORY bob 2"


@pytest_twisted.ensureDeferred
async def test_pipelined_lines_are_answered_in_order(servers):
    s = servers()
    alice = await s.logged_in("alice")
    for line in ("PING a", "USERS", "PING b", "NOSUCH", "PING c"):
        alice.send(line)
    replies = [await alice.message() for _ in range(5)]
    assert replies[0] == "OK PONG a" and replies[2] == "OK PONG b" and replies[4] == "OK PONG c"
    assert replies[1].startswith("OK USERS alice=online bob=offline")
    assert replies[3].startswith("ERR unknown-command ")


@pytest_twisted.ensureDeferred
async def test_a_binary_frame_gets_an_error_and_the_socket_stays(servers):
    s = servers()
    alice = await s.logged_in("alice")
    _, reply = await alice.reply(b"SEND bob hi", binary=True)
    assert reply.startswith("ERR binary-frame ")
    _, reply = await alice.reply("SEND bob two\nlines")
    assert reply.startswith("ERR control-character ")
    assert (await alice.reply("PING ok"))[1] == "OK PONG ok"
    assert (await alice.reply("HISTORY bob"))[1] == "OK HISTORY bob 0"  # nothing was sent


@pytest_twisted.ensureDeferred
async def test_an_oversized_message_gets_line_too_long_as_on_the_native_port(servers):
    s = servers()
    alice = await s.logged_in("alice")
    bob = await s.native_client("bob")
    text = "x" * MAX_LINE
    _, on_web = await alice.reply(f"SEND bob {text}")
    _, on_native = await bob.reply(f"SEND alice {text}")
    assert on_web == on_native == f"ERR line-too-long Lines are limited to {MAX_LINE} bytes; line discarded."
    assert (await alice.reply("PING still-here"))[1] == "OK PONG still-here"
    # Far beyond the limit, the WebSocket itself refuses the message and closes.
    alice.send("SEND bob " + "y" * (MAX_LINE * 20))
    assert await alice.closed() in (1006, 1009)
    assert (await bob.reply("USERS"))[1].startswith("OK USERS alice=offline bob=online")


@pytest_twisted.ensureDeferred
async def test_the_origin_is_checked(servers):
    s = servers(origins=["https://chat.example.org"])
    with pytest.raises(ConnectionError, match="403"):
        await s.socket(origin="http://evil.example.com")
    with pytest.raises(ConnectionError, match="403"):
        await s.socket(origin=f"http://localhost:{s.web_port}")  # another host name
    for allowed in ("same", "https://chat.example.org", None):
        ws = await s.socket(origin=allowed)
        assert (await ws.message()).startswith("* HELLO ")


@pytest_twisted.ensureDeferred
async def test_the_shared_connection_limit_counts_web_sockets(servers):
    s = servers(limits=ServerLimits(max_per_address=2))
    first = await s.logged_in("alice")
    await s.native_client("bob")
    third = await s.socket()
    assert (await third.message()).startswith("ERR too-many-connections ")
    assert await third.closed() == 1000
    first.close()
    await first.closed()
    fourth = await s.socket()
    assert (await fourth.message()).startswith("* HELLO ")


@pytest_twisted.ensureDeferred
async def test_the_flood_guard_closes_a_flooding_socket(servers):
    s = servers(limits=ServerLimits(rate=RateConfig(rate=1.0, burst=3)))
    alice = await s.logged_in("alice")  # the LOGIN was one line of the burst
    for n in range(20):
        alice.send(f"PING {n}")
    received = []
    while (message := await alice.message()) is not None:
        received.append(message)
    assert "* NOTICE rate-limited " in "\n".join(m[:24] for m in received)
    assert received[-1].startswith("ERR rate-limited ")
    assert received[0] == "OK PONG 0"


@pytest_twisted.ensureDeferred
async def test_a_socket_that_stops_reading_is_dropped_and_its_messages_wait(servers):
    s = servers(max_pending=20_000, limits=ServerLimits(rate=RateConfig(burst=0)))
    alice = await s.logged_in("alice")
    # Small socket buffers on both ends, so that a few hundred kB fill them.
    alice.protocol.transport.getHandle().setsockopt(SOL_SOCKET, SO_RCVBUF, 4096)
    (session,) = s.chat._sessions["alice"]
    server_side = session.client.transport.socket.transport
    server_side.getHandle().setsockopt(SOL_SOCKET, SO_SNDBUF, 4096)
    alice.protocol.transport.pauseProducing()  # the page stops reading
    bob = await s.native_client("bob")
    text = "z" * 150
    for n in range(40_000):  # bounded: a few MB at most
        bob.sendLine(f"SEND alice {n} {text}".encode())
        if n % 100 == 99:
            bob.sendLine(b"PING")
            while await bob.lines.get() != "OK PONG":  # after the 100 OK SENT
                pass
            if s.factory.connections.total == 1:
                break
    assert s.factory.connections.total == 1  # alice's socket was dropped
    assert await s.chat.store.seen("alice", "dm:alice:bob") == 0  # so all of them wait
    again = await s.logged_in("alice")
    pushed, reply = await again.reply("HISTORY bob 1")
    assert reply == "OK HISTORY bob 1" and pushed[0].endswith(f" bob {n} {text}")


@pytest_twisted.ensureDeferred
async def test_tokens_over_the_socket(servers):
    s = servers()
    alice = await s.logged_in("alice")
    _, reply = await alice.reply("TOKEN")
    token = reply.split(" ")[2]
    tab = await s.socket()
    await tab.message()
    assert await tab.reply(f"RESUME alice {token}") == ([], "OK RESUME alice")
    assert (await alice.reply(f"REVOKE {token}"))[1] == "OK REVOKE"
    assert (await tab.message()).startswith("* NOTICE revoked ")
    assert await tab.closed() == 1000


def test_origins_given_on_the_command_line_are_checked():
    assert parse_origin("https://Chat.example.org:8443/") == "https://chat.example.org:8443"
    assert parse_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("chat.example.org", "ftp://x", "https://x/path", "https://u@x", "https://x:99999"):
        with pytest.raises(ValueError):
            parse_origin(bad)


# -- the site ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_page_is_served_with_a_csp_and_caching_headers(servers):
    s = servers()
    status, headers, body = await deferToThread(http_get, s.web_port, "/")
    assert status == 200 and b'type="module"' in body and b"<script>" not in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "form-action 'none'" in csp  # no form ever submits: a password never lands in a URL
    assert b"name=\"password\"" not in body
    assert headers["cache-control"] == "no-cache" and "last-modified" in headers
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = await deferToThread(http_get, s.web_port, "/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, _, again = await deferToThread(
        http_get, s.web_port, "/app.js", {"If-Modified-Since": headers["last-modified"]}
    )
    assert status == 304 and again == b""
    status, headers, body = await deferToThread(http_get, s.web_port, "/config.json")
    limits = s.factory.limits.rate
    assert status == 200 and json.loads(body) == {
        "maxLine": 200, "requirePasswords": False, "rate": limits.rate, "burst": limits.burst
    }


@pytest.mark.parametrize(
    "path",
    [
        "/../__init__.py",
        "/%2e%2e/__init__.py",
        "/%2e%2e%2f__init__.py",
        "/..%2f__init__.py",
        "/%2E%2E%2F%2E%2E%2Fserver.py",
        "/./../site.py",
        "/..%5c__init__.py",
        "/%252e%252e%252f__init__.py",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
    ],
)
@pytest_twisted.ensureDeferred
async def test_nothing_outside_the_app_folder_can_be_read(servers, path):
    s = servers()
    status, headers, body = await deferToThread(http_get, s.web_port, path)
    assert status == 404, (path, status, body[:200])
    assert b"Theory of operation" not in body and b"root:" not in body
    assert "content-security-policy" in headers  # on errors too


@pytest_twisted.ensureDeferred
async def test_no_directory_listing(servers, tmp_path):
    s = servers()
    listed = [p.name for p in STATIC.iterdir() if p.is_dir()]
    for folder in listed or ["nosuch"]:
        status, _, body = await deferToThread(http_get, s.web_port, f"/{folder}/")
        assert status == 404 and b"Directory listing" not in body


def test_web_options_build_a_site_over_the_native_factory(tmp_path):
    from twisted.internet.testing import MemoryReactorClock
    from twisted.python import usage

    from spartan.tap import Options, makeService

    options = Options()
    options.parseOptions(
        ["--web-port", "8080", "--web-port", "ssl:8443:privateKey=k.pem", "--db", ":memory:",
         "--web-origin", "https://Chat.example.org", "--require-passwords"]
    )  # fmt: skip
    assert options["web-ports"] == ["tcp:8080", "ssl:8443:privateKey=k.pem"]
    assert options["web-origins"] == ["https://chat.example.org"]
    options = Options()
    options.parseOptions(["--web-port", "8080", "--db", ":memory:", "--require-passwords"])
    service = makeService(options, MemoryReactorClock())
    (web,) = [listener for listener in service.listeners if listener.option == "--web-port"]
    assert (web.description, web.what) == ("tcp:8080", "web client")
    site = web.factory
    ws = site.resource.children[b"ws"]
    assert ws._factory.native is service.factory  # the shared layer, limits and count
    settings = json.loads(site.resource.children[b"config.json"].body)
    assert settings == {"maxLine": 4096, "requirePasswords": True, "rate": 5.0, "burst": 40}
    with pytest.raises(usage.UsageError, match="--web-origin"):
        Options().parseOptions(["--web-origin", "chat.example.org"])


def test_text_frames_as_rfc_6455_writes_them():
    from spartan.web.socket import text_frame

    assert text_frame(b"Hello") == b"\x81\x05Hello"  # RFC 6455, 5.7
    assert text_frame(b"x" * 256) == b"\x81\x7e\x01\x00" + b"x" * 256
    big = b"y" * 65536
    assert text_frame(big) == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + big
