"""
Spartan's own line protocol (docs/protocol.md): the pure wire format (`wire`) and the
protocol on the shared connection layer (`protocol`).  The WebSocket front end speaks it too.
"""
