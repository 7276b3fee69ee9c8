"""
Who may use the server: users (in order) and groups (with their members).

The directory comes from a TOML file (``--config``) or, without one, is the spec's demo
directory.  The file format::

    # Users, in the order the user list shows them.
    users = ["alice", "bob", "charlie", "eve"]

    [groups]
    group1 = ["alice", "bob", "charlie", "eve"]

    # Optional: password hashes made with `python -m spartan.passwd`.
    [passwords]
    alice = "scrypt$..."
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from spartan.core.names import is_name
from spartan.passwd import BadHash, parse_hash


class ConfigError(Exception):
    """The directory file cannot be used; the message says why, for the operator."""


@dataclass(frozen=True)
class Directory:
    users: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    password_hashes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_names("user", self.users)
        _check_names("group", tuple(self.groups))
        known = set(self.users)
        for group, members in self.groups.items():
            _check_names(f"member of group {group!r}", members)
            strangers = [m for m in members if m not in known]
            if strangers:
                raise ConfigError(f"group {group!r} lists unknown users: {', '.join(strangers)}")
        unknown = [u for u in self.password_hashes if u not in known]
        if unknown:
            raise ConfigError(f"passwords given for unknown users: {', '.join(unknown)}")
        memberships: dict[str, list[str]] = {user: [] for user in self.users}
        for group, members in self.groups.items():
            for member in members:
                memberships[member].append(group)
        object.__setattr__(self, "_user_set", frozenset(self.users))
        object.__setattr__(self, "_memberships", memberships)

    def is_user(self, name: str) -> bool:
        return name in self._user_set

    def is_group(self, name: str) -> bool:
        return name in self.groups

    def users_without_password(self) -> list[str]:
        return [user for user in self.users if user not in self.password_hashes]

    def groups_of(self, user: str) -> list[str]:
        """The groups ``user`` is a member of, in the order of the directory."""
        return self._memberships.get(user, [])


def _check_names(what: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(name, str) or not is_name(name):
            raise ConfigError(
                f"{what} name {name!r} is not valid: use 1-32 letters, digits, _ . -"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"a {what} name appears twice")


DEMO = Directory(
    users=("alice", "bob", "charlie", "eve", "foo", "bar", "baz", "qux"),
    groups={"group1": ("alice", "bob", "charlie", "eve")},
)


def check_password_hashes(directory: Directory) -> None:
    """ConfigError unless every hash is one `spartan.passwd` can check (never shows it)."""
    for user, encoded in directory.password_hashes.items():
        try:
            parse_hash(encoded)
        except BadHash as e:
            raise ConfigError(f"the password hash of {user!r} is not usable: {e}") from None


def parse_directory(text: str) -> Directory:
    """The directory a file holds, hashes checked; ConfigError saying what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    unknown = set(data) - {"users", "groups", "passwords"}
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(sorted(unknown))}")
    users = data.get("users")
    if not isinstance(users, list) or not users:
        raise ConfigError('"users" must be a non-empty list of names')
    groups = data.get("groups", {})
    passwords = data.get("passwords", {})
    if not isinstance(groups, dict) or not all(isinstance(m, list) for m in groups.values()):
        raise ConfigError("[groups] must map each group name to a list of user names")
    if not isinstance(passwords, dict) or not all(isinstance(h, str) for h in passwords.values()):
        raise ConfigError("[passwords] must map user names to hash strings")
    directory = Directory(
        tuple(users), {name: tuple(members) for name, members in groups.items()}, passwords
    )
    check_password_hashes(directory)
    return directory


def load_directory(path: str) -> Directory:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    try:
        return parse_directory(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
