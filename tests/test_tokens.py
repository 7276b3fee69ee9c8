"""Session tokens and history paging over the native protocol (StringTransport, a Clock):
what the browser client relies on to log in again after a reload and to scroll back."""

from __future__ import annotations

from spartan.core.auth import PasswordAuthenticator
from spartan.core.directory import Directory
from spartan.passwd import hash_password
from spartan.core.tokens import DEFAULT_LIFETIME, digest
from tests.protocol_support import Server, login


def _connect(server):
    conn = server.connect()
    assert conn.read()[0].startswith("* HELLO ")
    return conn


def _token(conn) -> tuple[str, str]:
    reply = conn.send("TOKEN")[-1].split(" ")
    assert reply[:2] == ["OK", "TOKEN"] and len(reply) == 4, reply
    return reply[2], reply[3]


def test_a_token_logs_the_same_user_in_again_without_a_password():
    server = Server()
    server.clock.advance(1_764_000_000)
    alice = login(_connect(server), "alice")
    token, expires = _token(alice)
    assert expires == "2025-12-24T16:00:00.000Z"  # 30 days after the clock's now
    assert token not in repr(server.chat.store._tokens)  # only its digest is kept
    assert digest(token) in server.chat.store._tokens
    again = _connect(server)
    assert again.send(f"RESUME alice {token}") == ["OK RESUME alice"]
    bob = login(_connect(server), "bob")
    bob.send("SEND alice hi")
    assert again.read()[-1].endswith(" bob bob hi")


def test_a_token_is_for_its_user_only_and_garbage_changes_nothing():
    server = Server()
    token, _ = _token(login(_connect(server), "alice"))
    conn = _connect(server)
    assert conn.send(f"RESUME bob {token}")[-1].startswith("ERR bad-token ")
    assert conn.send(f"RESUME alice {'x' * 43}")[-1].startswith("ERR bad-token ")
    assert conn.send("RESUME alice x")[-1].startswith("ERR bad-syntax ")
    assert conn.send("USERS")[-1].startswith("ERR not-logged-in ")
    assert conn.send(f"RESUME alice {token}") == ["OK RESUME alice"]


def test_a_token_expires_on_the_injected_clock():
    server = Server()
    token, _ = _token(login(_connect(server), "alice"))
    server.clock.advance(DEFAULT_LIFETIME - 1)
    assert _connect(server).send(f"RESUME alice {token}") == ["OK RESUME alice"]
    server.clock.advance(1)
    assert _connect(server).send(f"RESUME alice {token}")[-1].startswith("ERR bad-token ")


def test_revoke_ends_the_token_and_the_sessions_that_used_it():
    server = Server()
    alice = login(_connect(server), "alice")
    token, _ = _token(alice)
    other, _ = _token(alice)
    tab = _connect(server)
    tab.send(f"RESUME alice {token}")
    second_tab = _connect(server)
    second_tab.send(f"RESUME alice {other}")
    assert login(_connect(server), "bob").send(f"REVOKE {token}")[-1].startswith("ERR bad-token ")
    assert alice.send(f"REVOKE {token}") == ["OK REVOKE"]
    assert tab.read() == ["* NOTICE revoked This session was ended (REVOKE)."]
    assert tab.closed and not alice.closed and not second_tab.closed
    assert _connect(server).send(f"RESUME alice {token}")[-1].startswith("ERR bad-token ")
    assert _connect(server).send(f"RESUME alice {other}") == ["OK RESUME alice"]


def test_token_commands_need_a_login():
    conn = _connect(Server())
    assert conn.send("TOKEN")[-1].startswith("ERR not-logged-in ")
    assert conn.send(f"REVOKE {'x' * 43}")[-1].startswith("ERR not-logged-in ")


def test_with_passwords_a_token_replaces_the_password_but_not_the_other_way_round():
    directory = Directory(
        users=("alice", "bob"), groups={}, password_hashes={"alice": hash_password("pw", n=2**4, r=1, p=1)}
    )
    server = Server(directory=directory)
    server.chat.authenticator = PasswordAuthenticator(directory, server.clock)
    conn = _connect(server)
    assert conn.send("LOGIN alice")[-1].startswith("ERR password-required ")
    assert conn.send("LOGIN alice pw") == ["OK LOGIN alice"]
    token, _ = _token(conn)
    assert _connect(server).send(f"LOGIN alice {token}")[-1].startswith("ERR bad-credentials ")
    assert _connect(server).send(f"RESUME alice {token}") == ["OK RESUME alice"]


def test_history_pages_back_with_a_before_id():
    server = Server()
    alice = login(_connect(server), "alice")
    ids = [int(alice.send(f"SEND bob m{i}")[-1].split(" ")[2]) for i in range(7)]
    page = alice.send("HISTORY bob 3")
    assert [line.rsplit(" ", 1)[1] for line in page[:-1]] == ["m4", "m5", "m6"]
    page = alice.send(f"HISTORY bob 3 {ids[4]}")
    assert [line.rsplit(" ", 1)[1] for line in page[:-1]] == ["m1", "m2", "m3"]
    assert page[-1] == "OK HISTORY bob 3"
    page = alice.send(f"HISTORY bob 3 {ids[1]}")
    assert page == [page[0], "OK HISTORY bob 1"] and page[0].endswith(" m0")
    assert alice.send(f"HISTORY bob 3 {ids[0]}") == ["OK HISTORY bob 0"]
    assert alice.send("HISTORY bob 3 x")[-1].startswith("ERR bad-syntax ")


def test_a_store_that_fails_gives_unavailable_and_changes_nothing():
    from twisted.internet.defer import fail

    from spartan.store import StoreError

    server = Server()
    alice = login(_connect(server), "alice")
    token, _ = _token(alice)
    store = server.chat.store
    store.add_token = lambda *args: fail(StoreError("disk full"))
    store.token_user = lambda *args: fail(StoreError("disk full"))
    assert alice.send("TOKEN")[-1].startswith("ERR unavailable ")
    assert _connect(server).send(f"RESUME alice {token}")[-1].startswith("ERR unavailable ")
    assert alice.send(f"REVOKE {token}")[-1].startswith("ERR unavailable ")
    del store.add_token, store.token_user  # the store is back: the token still works
    assert _connect(server).send(f"RESUME alice {token}") == ["OK RESUME alice"]
