"""
An irctest controller for Spartan's IRC gateway (irctest is not a dependency: see
docs/irc.md for how to run it).

irctest starts a fresh server per test and connects with nicks and channels of its own
choosing; Spartan only knows the users and groups of its directory.  So the directory
written here holds every nick and channel irctest's server tests use, each group with
every user as a member.  Messages are kept in memory.
"""

import os
import sys
from pathlib import Path

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

# Nicks and channels the server tests use (found in irctest/server_tests), except those
# the tests mean not to exist (#nonexistent, ...).
NICKS = """
foo bar baz qux nick nick1 nick2 nick3 nick4 alice bob carol charlie dave eve evan joe
mallory user user1 user2 user3 user4 userOne userTwo usernick otherNick sender chanop
modegettr joiner check chk curious first second guest1 guest2 guest3 ircop root schmoe
shivaram unprivileged unrelated buzz nonweb Bar Baz Claire botnick carl carmen netcat
observer recver web coolNick valid testnick bazbat
""".split()
CHANNELS = """
chan test chan1 chan2 bar auditorium alice channel gen bar_two Foo qux xyz unrelated
how fooa foo f c ch c90076 otherchan baz test_channel real_channel valid
""".split()

TWISTD = os.environ.get("SPARTAN_TWISTD", str(Path(sys.prefix) / "bin" / "twistd"))


def directory_toml() -> str:
    users = ", ".join(f'"{n}"' for n in NICKS)
    groups = "\n".join(f'"{c}" = [{users}]' for c in CHANNELS)
    return f"users = [{users}]\n\n[groups]\n{groups}\n"


class SpartanController(BaseServerController, DirectoryBasedController):
    software_name = "Spartan"
    supported_sasl_mechanisms: set = set()
    supports_sts = False

    def run(self, hostname, port, *, password, ssl, run_services, faketime,
            websocket_hostname, websocket_port):
        if ssl or websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("TLS and websockets")
        if password is not None:
            raise NotImplementedByController("a server password")
        assert self.proc is None
        self.port, self.hostname = port, hostname
        self.create_config()
        with self.open_file("directory.toml", "w") as fd:
            fd.write(directory_toml())
        _, native_port = self.get_hostname_and_port()
        self.proc = self.execute([
            TWISTD, "-n", "--pidfile=", "-l", str(self.directory / "server.log"), "spartan",
            "--config", str(self.directory / "directory.toml"), "--db", ":memory:",
            "--port", f"tcp:{native_port}:interface={hostname}",
            "--irc-port", f"tcp:{port}:interface={hostname}",
            "--server-name", "My.Little.Server", "--burst", "0",
        ])


def get_irctest_controller_class():
    return SpartanController
