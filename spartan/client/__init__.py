"""
The Spartan terminal client: ``python -m spartan.client <username>``.

- `spartan.client.flow`: the menu and chat flow, a pure state machine (no I/O);
- `spartan.client.text`: what may be shown and what may be sent (pure);
- `spartan.client.editor`: the input line on a terminal, keys in, line out (pure);
- `spartan.client.console`: the stdio adapter on a terminal (raw mode, keys, drawing);
- `spartan.client.terminal`: the stdio adapter for piped input (lines), and terminal modes;
- `spartan.client.hosts`: ``--host`` addresses and the order they are tried in (pure);
- `spartan.client.connection`: the server connection and reconnecting with backoff;
- `spartan.client.app`: wires them together;
- `spartan.client.__main__`: the command line.
"""
