"""
Session tokens: how a browser tab logs in again after a reload without keeping a password.

Theory of operation
-------------------
* After a login, a client asks for a token (``TOKEN``) and keeps it; later it logs in with
  ``RESUME <user> <token>`` instead of a password.  A token is 32 random bytes, URL-safe
  base64: it is a secret like a password, so it only ever travels in those lines.
* The store keeps the sha256 digest of a token, its user and its expiry, never the token:
  a copy of the database gives nobody a way in.  A token is unguessable, so a fast hash
  is enough (no salt, no slow hash: those protect guessable passwords).
* A token expires `DEFAULT_LIFETIME` after it was issued, measured on the injected clock;
  ``REVOKE <token>`` ends it at once and closes this node's connections that logged in
  with it.
* `SessionTokens` is also the chat core's `Authenticator`: a `Token` credential is checked
  here, anything else (a password) goes to the authenticator it wraps.  So a token login
  opens a session through `Chat.login` like any other, with the same directory checks.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import weakref
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from spartan.core.errors import ChatError
from spartan.store import MessageStore

DEFAULT_LIFETIME = 30 * 24 * 3600.0  # seconds a token lasts
TOKEN_BYTES = 32

BAD_TOKEN = "bad-token"


@dataclass(frozen=True, slots=True)
class Token:
    """A credential that is a session token, not a password (see `SessionTokens.check`)."""

    value: str = field(repr=False)

    @property
    def digest(self) -> str:
        return digest(self.value)


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionTokens:
    """Issues, checks and revokes tokens; an `Authenticator` around the password one."""

    def __init__(
        self, store: MessageStore, clock, passwords, store_failed, lifetime=DEFAULT_LIFETIME
    ) -> None:
        self.store = store
        self.clock = clock
        self.passwords = passwords  # the Authenticator for password logins
        self.lifetime = lifetime
        # An errback turning a StoreError into the user's ChatError (the chat core's).
        self._unavailable_on_failure = lambda d: d.addErrback(store_failed)
        # digest -> connections logged in with it; weak, so a closed one simply goes away.
        self._holders: dict[str, weakref.WeakSet] = {}

    def check(self, user: str, credential, peer: str | None) -> Deferred[bool]:
        if not isinstance(credential, Token):
            return self.passwords.check(user, credential, peer)

        def found(owner: str | None) -> bool:
            if owner != user:
                raise ChatError(BAD_TOKEN, "This session token is unknown, expired or revoked.")
            return True

        return self._unavailable_on_failure(
            self.store.token_user(credential.digest, self.clock.seconds())
        ).addCallback(found)

    def issue(self, user: str) -> Deferred[tuple[str, float]]:
        """A new token for ``user``: fires with (token, expiry) once it is stored."""
        token = new_token()
        now = self.clock.seconds()
        expires = now + self.lifetime
        d = self.store.add_token(digest(token), user, expires, now)
        return self._unavailable_on_failure(d).addCallback(lambda _: (token, expires))

    def revoke(self, user: str, token: str, keep=None) -> Deferred[None]:
        """End ``user``'s token; close this node's connections that logged in with it,
        but ``keep`` (the connection that asked: it gets its reply and stays)."""
        key = digest(token)

        def found(owner: str | None):
            if owner != user:  # someone else's token stays: no way to probe for them
                raise ChatError(BAD_TOKEN, "You have no such session token.")
            return self.store.remove_token(key)

        def removed(_) -> None:
            for holder in list(self._holders.pop(key, ())):
                if holder is not keep and holder.connected:
                    holder.hang_up("revoked", "This session was ended (REVOKE).")

        d = self.store.token_user(key, self.clock.seconds()).addCallback(found)
        return self._unavailable_on_failure(d).addCallback(removed)

    def attach(self, token: Token, holder) -> None:
        """``holder`` (a connection with ``hang_up(code, sentence)``) logged in with it."""
        self._holders.setdefault(token.digest, weakref.WeakSet()).add(holder)


def session_tokens(chat) -> SessionTokens:
    """The chat's `SessionTokens`, put around its authenticator the first time it is asked
    for: so every chat accepts tokens, and no other authenticator ever sees a `Token`."""
    authenticator = chat.authenticator
    if not isinstance(authenticator, SessionTokens):
        authenticator = chat.authenticator = SessionTokens(
            chat.store, chat.clock, authenticator, chat._store_failed
        )
    return authenticator

