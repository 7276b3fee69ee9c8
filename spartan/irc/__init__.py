"""
The IRC gateway: any IRC client can log in to Spartan (``--irc-port``); see docs/irc.md.

* `spartan.irc.lines`: IRC lines as text (parse, format, clean and cut), pure;
* `spartan.irc.numerics`: the numeric replies;
* `spartan.irc.gateway`: the protocol, one IRC connection;
* `spartan.irc.factory`: the factory, presence (who joined what) and message encoders.
"""

from spartan.irc.factory import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_PENDING,
    DEFAULT_SERVER_NAME,
    MOTD,
    IRCGatewayFactory,
)
from spartan.irc.gateway import IRCGateway
from spartan.irc.lines import is_server_name

__all__ = [
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SERVER_NAME",
    "MOTD",
    "IRCGateway",
    "IRCGatewayFactory",
    "is_server_name",
]
