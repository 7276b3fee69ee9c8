"""
The Spartan terminal client: ``python -m spartan.client <username>``.

- `spartan.client.flow`: the menu and chat flow, a pure state machine (no I/O);
- `spartan.client.text`: what may be shown and what may be sent (pure);
- `spartan.client.terminal`: the stdio adapter (`StandardIO` protocol, rendering);
- `spartan.client.hosts`: ``--host`` addresses and the order they are tried in (pure);
- `spartan.client.connection`: the server connection and reconnecting with backoff;
- `spartan.client.app`: wires the three together;
- `spartan.client.__main__`: the command line.
"""
