"""
Several nodes as one server, over Redis (docs/cluster.md): `nodes` joins a node to the
others (delivery and presence), `batches` is the pure format of what they publish.  The
messages themselves live in `spartan.store.redis`.
"""
