"""
The IRC gateway: any IRC client can log in to Spartan (``--irc-port``); see docs/irc.md.

* `spartan.irc.lines`: IRC lines as text (parse, format, clean and cut), pure;
* `spartan.irc.numerics`: the numeric replies;
* `spartan.irc.registration`: CAP/PASS/NICK/USER as a state machine, pure;
* `spartan.irc.messages`: Spartan messages as PRIVMSG lines;
* `spartan.irc.roster`: who joined which channel;
* `spartan.irc.gateway`: the protocol, one IRC connection, on the shared connection layer;
* `spartan.irc.factory`: the factory, building connections and holding what they share.
"""

from spartan.irc.factory import DEFAULT_SERVER_NAME, MOTD, IRCGatewayFactory
from spartan.irc.gateway import IRCGateway
from spartan.irc.lines import is_server_name

__all__ = ["DEFAULT_SERVER_NAME", "MOTD", "IRCGateway", "IRCGatewayFactory", "is_server_name"]
