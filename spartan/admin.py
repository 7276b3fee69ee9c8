"""
``spartan-admin`` (or ``python -m spartan.admin``): change the directory file that
``twistd spartan --config`` reads, without an editor; and back up a running server's
database.

Theory of operation: the file is read with tomlkit, which keeps its comments, order and
layout; one command edits that document; the result is checked by the very loader the
server uses (`spartan.directory.parse_directory`), so nothing the server would refuse is
written; then the file is replaced atomically: a temporary file in the same folder, with
the old file's mode (and owner, when we may), flushed to disk, then ``os.replace``.  The
server or a backup reads the old file or the new one, never half of one.

Passwords are never arguments (``ps`` shows arguments to everybody): they are asked twice
without echo at a terminal, or read as the first line of standard input from a script.

Two admins at once take turns: each holds an exclusive ``flock`` on the file while it reads,
edits and replaces it (and locks again if the file was replaced while it waited).

``--reload PIDFILE`` then sends SIGHUP to the server whose pid the file holds.

``backup --pidfile PIDFILE`` (or ``--pid PID``) asks the running server for an online
backup of its database (SIGUSR2: only the server can read the file while it runs), then
waits, bounded, for the server to put a new file at the backup path (it replaces the file
atomically, so a new file there is a whole one) and reads it to say how many messages it
holds.

Exit status: 0 done; 1 refused (the file is left as it was), the server could not be
signalled, or no backup came; 2 a usage error.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sqlite3
import stat
import sys
import time
from urllib.request import pathname2url

import tomlkit
from tomlkit.exceptions import TOMLKitError

from spartan.core.directory import ConfigError, parse_directory
from spartan.files import replacing
from spartan.process import BACKUP_SIGNAL
from spartan.passwd import PasswordRefused, hash_password, read_new_password
from spartan.store.sqlite import default_backup_path

EXIT_REFUSED = 1
EXIT_USAGE = 2
BACKUP_TIMEOUT = 60.0  # seconds: a large database on a slow disk takes a while
PROG = "spartan-admin"
NEW_FILE = (
    "# Users and groups of a Spartan server (twistd spartan --config).\n"
    "# Edited by spartan-admin, which keeps comments and layout.\n"
)


class Refused(Exception):
    """The command cannot be done; the message says why, and nothing was written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        self.exit(EXIT_USAGE, f"{PROG}: {message}; see {PROG} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Change the users, groups and passwords of a Spartan directory file, "
        "keeping its comments and layout; or back up a running server's database.",
        epilog="Passwords are asked twice without echo, or read as the first line of "
        "standard input when it is not a terminal. Exit status: 1 refused (nothing "
        "changed) or no backup, 2 usage error.",
    )
    parser.add_argument("--config", "-c", metavar="PATH",
                        help="the TOML file the server reads (twistd spartan --config PATH); "
                        "every command but backup needs it")
    parser.add_argument("--reload", metavar="PIDFILE",
                        help="then send SIGHUP to the server whose pid this file holds")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *arguments: str):
        sub = commands.add_parser(name, help=help, description=help)
        for argument in arguments:
            sub.add_argument(argument)
        sub.error = parser.error  # the same one-line usage errors
        return sub

    add_user = command("add-user", "add a user (created: the file, if it does not exist)",
                       "user")
    add_user.add_argument("--password", action="store_true", help="and ask for a password")
    command("remove-user", "remove a user, from every group too, with the password hash",
            "user")
    command("passwd", "set (or change) a user's password", "user")
    command("add-group", "add a group, with no members yet", "group")
    command("remove-group", "remove a group", "group")
    command("add-member", "add a user to a group", "group", "user")
    command("remove-member", "remove a user from a group", "group", "user")
    command("list", "show the users (with or without a password) and the groups")
    backup = command("backup", "have the running server write an online backup of its "
                     "database, and wait for it")
    server = backup.add_mutually_exclusive_group(required=True)
    server.add_argument("--pidfile", help="the server's (twistd --pidfile)")
    server.add_argument("--pid", type=int, help="the server's process id (under systemd: "
                        "systemctl show -p MainPID --value spartan)")
    backup.add_argument("--db", help="the server's --db: the backup is written beside it, "
                        "to DB.backup")
    backup.add_argument("--backup-path", metavar="PATH",
                        help="the server's --backup-path, if it was given one")
    backup.add_argument("--timeout", type=float, default=BACKUP_TIMEOUT, metavar="SECONDS",
                        help=f"how long to wait for the backup (default {BACKUP_TIMEOUT:g})")
    return parser  # fmt: skip


# -- the edits: each takes the document and the arguments, returns what it did ----------


def _users(doc) -> list:
    users = doc.get("users")
    if users is None:
        users = doc["users"] = tomlkit.array()
    return users


def _table(doc, name: str):
    if name not in doc:
        doc[name] = tomlkit.table()
    return doc[name]


def _members(doc, group: str) -> list:
    groups = doc.get("groups", {})
    if group not in groups:
        raise Refused(f"there is no group {group!r}")
    return groups[group]


def _known_user(doc, user: str) -> None:
    if user not in _users(doc):
        raise Refused(f"there is no user {user!r}")


def add_user(doc, args, password) -> str:
    if args.user in _users(doc):
        raise Refused(f"the user {args.user!r} exists already")
    _users(doc).append(args.user)
    if not args.password:
        return f"Added the user {args.user}"
    _table(doc, "passwords")[args.user] = hash_password(password())
    return f"Added the user {args.user} with a password"


def remove_user(doc, args, password) -> str:
    _known_user(doc, args.user)
    _users(doc).remove(args.user)
    left = []
    for group, members in doc.get("groups", {}).items():
        if args.user in members:
            members.remove(args.user)
            left.append(group)
    if args.user in doc.get("passwords", {}):
        del doc["passwords"][args.user]
    return f"Removed the user {args.user}" + (f" (and from {', '.join(left)})" if left else "")


def set_password(doc, args, password) -> str:
    _known_user(doc, args.user)
    passwords = _table(doc, "passwords")
    changed = args.user in passwords
    passwords[args.user] = hash_password(password())
    return f"{'Changed' if changed else 'Set'} the password of {args.user}"


def add_group(doc, args, password) -> str:
    groups = _table(doc, "groups")
    if args.group in groups:
        raise Refused(f"the group {args.group!r} exists already")
    groups[args.group] = tomlkit.array()
    return f"Added the group {args.group}"


def remove_group(doc, args, password) -> str:
    _members(doc, args.group)
    del doc["groups"][args.group]
    return f"Removed the group {args.group}"


def add_member(doc, args, password) -> str:
    members = _members(doc, args.group)
    _known_user(doc, args.user)
    if args.user in members:
        raise Refused(f"{args.user} is a member of {args.group} already")
    members.append(args.user)
    return f"Added {args.user} to {args.group}"


def remove_member(doc, args, password) -> str:
    members = _members(doc, args.group)
    if args.user not in members:
        raise Refused(f"{args.user!r} is not a member of {args.group}")
    members.remove(args.user)
    return f"Removed {args.user} from {args.group}"


EDITS = {
    "add-user": add_user,
    "remove-user": remove_user,
    "passwd": set_password,
    "add-group": add_group,
    "remove-group": remove_group,
    "add-member": add_member,
    "remove-member": remove_member,
}


# -- the file ----------------------------------------------------------------------------


def read_document(path: str, may_create: bool):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if not may_create:
            raise Refused(f"cannot read {path}: there is no such file") from None
        text = NEW_FILE
    except (OSError, UnicodeDecodeError) as e:
        raise Refused(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as e:
        raise Refused(f"{path} is not valid TOML: {e}") from None


def replace_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
        if old is not None:
            os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
            try:  # root editing the file of the server's user must leave it theirs
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
            except PermissionError:
                pass
        else:  # mkstemp's 0600 is right for a file of password hashes; let the group read
            os.fchmod(f.fileno(), 0o640)


def read_pid(pidfile: str) -> int:
    try:
        with open(pidfile, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise Refused(f"cannot read a pid from {pidfile}: {getattr(e, 'strerror', None) or e}")


def signal_server(pid: int, signum: int, source: str = "") -> None:
    """Send ``signum`` to the server ``pid`` (read from ``source``, if it was)."""
    if pid <= 0:  # os.kill would signal a process group
        raise Refused(f"{pid} is not a process id")
    try:
        os.kill(pid, signum)
    except OSError as e:
        where = f" from {source}" if source else ""
        raise Refused(f"cannot signal the server (pid {pid}{where}): {e.strerror}")


def send_reload(pidfile: str) -> int:
    """SIGHUP to the server whose pid ``pidfile`` holds; its pid."""
    pid = read_pid(pidfile)
    signal_server(pid, signal.SIGHUP, pidfile)
    return pid


def _file_identity(path: str) -> tuple[int, int, int] | None:
    """What changes when the file at ``path`` is replaced (None: there is none)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return True


def count_messages(path: str) -> int:
    """Open a backup read-only, as a check that it is a Spartan database; its messages."""
    try:
        conn = sqlite3.connect(f"file:{pathname2url(path)}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise Refused(f"the new backup {path} cannot be read: {e}") from None


def backup(args, stdout) -> None:
    """Ask the server for a backup; return once a new file is at the backup path."""
    path = os.path.abspath(args.backup_path or default_backup_path(args.db))
    before = _file_identity(path)
    pid = args.pid if args.pidfile is None else read_pid(args.pidfile)
    signal_server(pid, BACKUP_SIGNAL, args.pidfile or "")
    deadline = time.monotonic() + args.timeout
    while (now := _file_identity(path)) is None or now == before:
        if not _running(pid):
            raise Refused(f"the server (pid {pid}) exited before writing {path}")
        if time.monotonic() >= deadline:
            raise Refused(
                f"the server (pid {pid}) wrote no backup to {path} within {args.timeout:g} "
                "seconds; its log says why (a line 'Backup to ... failed: ...' or 'SIGUSR2: ...')"
            )
        time.sleep(0.05)
    count = count_messages(path)
    stdout.write(f"Backup written to {path} ({count} messages).\n")


def listing(doc) -> list[str]:
    passwords = doc.get("passwords", {})
    lines = [
        f"user {user} {'password' if user in passwords else 'no-password'}"
        for user in doc.get("users", [])
    ]
    for group, members in doc.get("groups", {}).items():
        lines.append(" ".join(["group", group, *members]))
    return lines


def main(argv: list[str] | None = None, *, getpass=None, stdin=None, stdout=None,
         stderr=None) -> int:  # fmt: skip
    import getpass as _getpass

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.command == "backup" and not (args.db or args.backup_path):
            parser.error("backup needs the server's --db or --backup-path")
        if args.command != "backup" and not args.config:
            parser.error(f"{args.command} needs --config PATH")
    except SystemExit as e:
        return e.code

    def password() -> str:
        try:
            return read_new_password(getpass or _getpass.getpass, stdin)
        except PasswordRefused as e:
            raise Refused(str(e)) from None

    if args.command == "backup":
        try:
            backup(args, stdout)
        except Refused as e:
            stderr.write(f"{PROG}: {e}.\n")
            return EXIT_REFUSED
        return 0
    try:
        done = run(args, password, stdout)
    except ConfigError as e:  # the file as it is already
        stderr.write(f"{PROG}: {args.config}: {e}\n")
        return EXIT_REFUSED
    except Refused as e:
        stderr.write(f"{PROG}: {str(e).rstrip('.')}; nothing changed.\n")
        return EXIT_REFUSED
    if done and args.reload:
        try:
            pid = send_reload(args.reload)
        except Refused as e:
            stderr.write(f"{PROG}: {args.config} is saved, but {str(e).rstrip('.')}.\n")
            return EXIT_REFUSED
        stdout.write(f"Sent SIGHUP to the server (pid {pid}).\n")
    return 0


def lock_current_file(path: str) -> int | None:
    """An exclusive lock on the file ``path`` names now (None if there is none yet): two
    admins at once take turns, and the second one edits what the first one wrote."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # replaced while we waited: lock the new one


def run(args, password, stdout) -> bool:
    """Do the command; whether the file changed."""
    if args.command == "list":
        doc = read_document(args.config, may_create=False)
        parse_directory(tomlkit.dumps(doc))  # the server's view, or why it would refuse
        stdout.write("".join(line + "\n" for line in listing(doc)))
        return False
    lock = lock_current_file(os.path.realpath(args.config))
    try:
        doc = read_document(args.config, may_create=args.command == "add-user")
        done = EDITS[args.command](doc, args, password)
        text = tomlkit.dumps(doc)
        try:
            parse_directory(text)
        except ConfigError as e:
            raise Refused(f"the server would refuse the result: {e}") from None
        try:
            replace_atomically(args.config, text)
        except OSError as e:
            raise Refused(f"cannot write {args.config}: {e.strerror or e}") from None
    finally:
        if lock is not None:
            os.close(lock)
    stdout.write(f"{done} in {args.config}.\n")
    return True


if __name__ == "__main__":
    raise SystemExit(main())
