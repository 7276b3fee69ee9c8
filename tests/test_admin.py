"""`spartan-admin`: edits the directory file in place, keeping its comments, refusing what
the server would refuse, writing atomically; passwords never come from arguments."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys

import pexpect
import pytest

from spartan import admin
from spartan.core.directory import load_directory
from spartan.passwd import verify_password
from tests.support import LineClient, TwistdServer

TEAM = """\
# The team's directory: who may chat.
users = [
    "alice",  # the lead
    "bob",
]

[groups]
# Night shift only.
night = ["alice", "bob"]
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def team(tmp_path):
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    path.chmod(0o600)
    return path


def run(path, *args, stdin="", getpass=None):
    out, err = io.StringIO(), io.StringIO()
    status = admin.main(["--config", str(path), *args], getpass=getpass,
                        stdin=io.StringIO(stdin) if isinstance(stdin, str) else stdin,
                        stdout=out, stderr=err)  # fmt: skip
    return status, out.getvalue(), err.getvalue()


def test_add_user_keeps_every_comment_and_line_of_the_file(team):
    assert run(team, "add-user", "carol") == (0, f"Added the user carol in {team}.\n", "")
    text = team.read_text()
    assert text == TEAM.replace('    "bob",\n', '    "bob",\n    "carol",\n')
    assert load_directory(str(team)).users == ("alice", "bob", "carol")


def test_remove_user_takes_them_out_of_every_group_and_drops_their_hash(team):
    assert run(team, "passwd", "bob", stdin="hunter2\n")[0] == 0
    assert run(team, "add-group", "day")[0] == 0
    assert run(team, "add-member", "day", "bob")[0] == 0
    status, out, _ = run(team, "remove-user", "bob")
    assert status == 0 and "(and from night, day)" in out
    directory = load_directory(str(team))
    assert directory.users == ("alice",)
    assert directory.groups == {"night": ("alice",), "day": ()}
    assert directory.password_hashes == {}
    assert "# The team's directory: who may chat." in team.read_text()


def test_a_piped_password_is_the_first_line_and_is_stored_as_a_hash(team):
    assert run(team, "passwd", "alice", stdin="correct horse\nignored\n")[0] == 0
    stored = load_directory(str(team)).password_hashes["alice"]
    assert "correct horse" not in team.read_text()
    assert verify_password("correct horse", stored)
    status, out, _ = run(team, "passwd", "alice", stdin="battery staple\n")
    assert (status, out) == (0, f"Changed the password of alice in {team}.\n")
    assert verify_password("battery staple", load_directory(str(team)).password_hashes["alice"])


def test_at_a_terminal_the_password_is_asked_twice_and_must_match(team):
    answers = iter(["one", "two"])
    status, _, err = run(team, "add-user", "carol", "--password", stdin=Terminal(),
                         getpass=lambda prompt: next(answers))  # fmt: skip
    assert (status, err) == (1, "spartan-admin: The passwords do not match; nothing changed.\n")
    assert team.read_text() == TEAM


@pytest.mark.parametrize(
    "args, stdin, complaint",
    [
        (["add-user", "bob"], "", "the user 'bob' exists already"),
        (["add-user", "bad name"], "", "the server would refuse the result: user name 'bad name'"),
        (["remove-user", "zed"], "", "there is no user 'zed'"),
        (["passwd", "zed"], "pw\n", "there is no user 'zed'"),
        (["passwd", "bob"], "\n", "An empty password is not allowed"),
        (["passwd", "bob"], " padded\n", "A password cannot start or end with a space"),
        (["add-group", "night"], "", "the group 'night' exists already"),
        (["add-member", "day", "bob"], "", "there is no group 'day'"),
        (["add-member", "night", "zed"], "", "there is no user 'zed'"),
        (["add-member", "night", "bob"], "", "bob is a member of night already"),
        (["remove-member", "night", "zed"], "", "'zed' is not a member of night"),
    ],
)
def test_a_refusal_says_why_in_one_line_and_leaves_the_file_alone(team, args, stdin, complaint):
    before = os.stat(team)
    status, out, err = run(team, *args, stdin=stdin)
    assert status == 1 and out == ""
    assert err.startswith(f"spartan-admin: {complaint}")
    assert err.endswith("; nothing changed.\n") and err.count("\n") == 1
    assert team.read_text() == TEAM
    assert os.stat(team).st_ino == before.st_ino


def test_a_file_the_server_would_refuse_is_refused_before_any_change(team):
    broken = TEAM.replace('night = ["alice", "bob"]', 'night = ["alice", "mallory"]')
    team.write_text(broken)
    status, _, err = run(team, "add-user", "carol")
    assert status == 1
    assert "group 'night' lists unknown users: mallory" in err
    assert team.read_text() == broken
    assert run(team, "list")[0] == 1


def test_the_file_is_replaced_atomically_with_its_mode(team):
    before = os.stat(team)
    assert run(team, "add-group", "day")[0] == 0
    after = os.stat(team)
    assert after.st_ino != before.st_ino  # a new file renamed over the old one
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert sorted(p.name for p in team.parent.iterdir()) == ["team.toml"]  # no leftovers


def test_a_symlinked_file_stays_a_symlink(tmp_path, team):
    link = tmp_path / "link.toml"
    link.symlink_to(team)
    assert run(link, "add-user", "carol")[0] == 0
    assert link.is_symlink() and "carol" in team.read_text()


def test_add_user_creates_a_missing_file(tmp_path):
    path = tmp_path / "new.toml"
    assert run(path, "add-user", "alice")[0] == 0
    assert load_directory(str(path)).users == ("alice",)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    status, _, err = run(tmp_path / "none.toml", "add-group", "x")
    assert status == 1 and "there is no such file" in err


def test_list_shows_users_with_and_without_passwords_and_groups(team):
    run(team, "passwd", "bob", stdin="pw\n")
    assert run(team, "list") == (
        0, "user alice no-password\nuser bob password\ngroup night alice bob\n", ""
    )


@pytest.mark.parametrize(
    "args", [["add-user"], ["frob"], ["passwd", "alice", "hunter2"], [],
             ["backup", "--pidfile", "spartan.pid"]]
)
def test_usage_errors_are_one_line_and_status_2(team, args, capsys):
    status, out, _ = run(team, *args)
    assert status == 2 and out == ""
    err = capsys.readouterr().err
    assert err.startswith("spartan-admin: ") and err.endswith("; see spartan-admin --help\n")
    assert err.count("\n") == 1
    assert team.read_text() == TEAM


def test_python_m_spartan_admin_reads_the_password_without_echo_at_a_terminal(team):
    child = pexpect.spawn(sys.executable, ["-m", "spartan.admin", "-c", str(team), "passwd",
                                           "alice"], timeout=20, encoding="utf-8")  # fmt: skip
    try:
        child.expect("Password: ")
        child.sendline("s3cret words")
        child.expect("Again: ")
        child.sendline("s3cret words")
        child.expect(pexpect.EOF)
        assert "s3cret" not in child.before  # not echoed
        assert "Set the password of alice" in child.before
    finally:
        child.close()
    assert child.exitstatus == 0
    assert verify_password("s3cret words", load_directory(str(team)).password_hashes["alice"])


def test_reload_signals_the_running_server(tmp_path, team):
    pidfile = tmp_path / "spartan.pid"
    server = TwistdServer(tmp_path, "--config", str(team), "--db", ":memory:")
    server.start()
    try:
        pidfile.write_text(f"{server.process.pid}\n")  # what twistd --pidfile writes
        result = subprocess.run(
            [sys.executable, "-m", "spartan.admin", "-c", str(team), "--reload", str(pidfile),
             "add-user", "carol"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith(f"Sent SIGHUP to the server (pid {server.process.pid}).\n")
        server.wait_for_log("1 user(s) added (carol)")
        assert server.process.poll() is None
        client = LineClient(server.port)
        assert client.ok("LOGIN carol") == "OK LOGIN carol"  # at once, nobody restarted
    finally:
        assert server.stop() == -signal.SIGTERM


def test_reload_without_a_server_says_the_file_is_saved(tmp_path, team):
    status, out, err = run(team, "--reload", str(tmp_path / "none.pid"), "add-user", "carol")
    assert status == 1
    assert "Added the user carol" in out
    assert err.startswith(f"spartan-admin: {team} is saved, but cannot read a pid from ")


def test_an_admin_waits_for_another_and_edits_what_that_one_wrote(team):
    import fcntl

    with open(team) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another spartan-admin is at work
        waiting = subprocess.Popen(
            [sys.executable, "-m", "spartan.admin", "-c", str(team), "add-user", "carol"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiting.wait(1.0)
            # ... which replaces the file, as spartan-admin does, then lets go.
            admin.replace_atomically(str(team), TEAM.replace('"bob",\n', '"bob",\n    "dave",\n'))
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        out, err = waiting.communicate(timeout=20)
    assert waiting.returncode == 0, err
    assert load_directory(str(team)).users == ("alice", "bob", "dave", "carol")


def test_every_command_but_backup_needs_the_config_file(capsys):
    assert admin.main(["add-user", "carol"]) == 2
    assert capsys.readouterr().err == (
        "spartan-admin: add-user needs --config PATH; see spartan-admin --help\n"
    )
