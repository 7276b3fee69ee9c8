"""
Password hashes for the ``[passwords]`` table of the directory file.

A hash is ``scrypt$<n>$<r>$<p>$<salt>$<key>``: scrypt's cost parameters, then a random
16-byte salt and the 32-byte derived key, both in base64.  The parameters travel with the
hash, so they can be raised later without invalidating the hashes already handed out.

Nothing here logs, and nothing here touches the reactor: `verify_password` is slow on
purpose (tens of milliseconds, 16 MiB of memory) and the caller runs it in a thread.

``python -m spartan.passwd`` asks for a password twice without echoing it and prints the
line to paste into the directory file.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import sys

SCHEME = "scrypt"
# scrypt's interactive-login parameters: 2**14 * 8 * 128 bytes = 16 MiB and ~50 ms a hash.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
# Refuse hashes whose parameters would make one check take gigabytes or minutes: a
# directory file is trusted, but a typo should not take the server down.
MAX_N, MAX_R, MAX_P = 2**20, 32, 16
MAXMEM = 256 * 1024 * 1024


class BadHash(ValueError):
    """A string that is not a hash made by this module."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=length
    )


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """A new salted hash of ``password``, in the format the directory file holds."""
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, n, r, p, KEY_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, key) of a hash, or `BadHash`.  Never shows the hash in the error."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise BadHash("not a scrypt$n$r$p$salt$key hash made by python -m spartan.passwd")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise BadHash("the parameters, salt or key of the hash are malformed") from None
    if not (1 < n <= MAX_N and n & (n - 1) == 0 and 0 < r <= MAX_R and 0 < p <= MAX_P):
        raise BadHash("the scrypt parameters of the hash are out of range")
    if len(salt) < 8 or len(key) < 16:
        raise BadHash("the salt or key of the hash is too short")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; the comparison takes constant time."""
    try:
        n, r, p, salt, key = parse_hash(encoded)
    except BadHash:
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p, len(key)), key)


@functools.cache
def dummy_hash() -> str:
    """Checked instead of a real hash for unknown users (and users without a hash when
    passwords are required), so that their answer costs the time of a wrong password."""
    return hash_password(os.urandom(16).hex())


class PasswordRefused(ValueError):
    """A new password that cannot be used; the message says why, for the person typing."""


def read_new_password(getpass, stdin) -> str:
    """A new password: asked twice without echo at a terminal, else the first line of
    ``stdin`` (a script pipes it in; never an argument, which ``ps`` would show)."""
    if stdin.isatty():
        password = getpass("Password: ")
        if password != getpass("Again: "):
            raise PasswordRefused("The passwords do not match.")
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise PasswordRefused("An empty password is not allowed.")
    if password != password.strip(" ") or not password.isprintable():
        # LOGIN ignores spaces around the password and refuses control characters.
        raise PasswordRefused(
            "A password cannot start or end with a space, nor hold control characters."
        )
    return password


def main(argv: list[str] | None = None, *, getpass=None, stdin=None, stdout=None) -> int:
    """``python -m spartan.passwd [user]``: print a hash line to paste under ``[passwords]``."""
    import getpass as _getpass

    argv = sys.argv[1:] if argv is None else argv
    getpass = getpass or _getpass.getpass
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m spartan.passwd [user]", file=sys.stderr)
        print("Reads a password (twice, without echo) and prints its hash.", file=sys.stderr)
        return 2
    try:
        password = read_new_password(getpass, stdin)
    except PasswordRefused as e:
        print(f"{e} Nothing printed.", file=sys.stderr)
        return 1
    hashed = hash_password(password)
    stdout.write(f'{argv[0]} = "{hashed}"\n' if argv else hashed + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
