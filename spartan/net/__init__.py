"""
The connection layer every front end shares: lines out of bytes (`framing`), one write per
connection per turn (`batch`), the slow-reader limit (`backlog`), flood control and timeouts
(`limits`, the policy, and `guard`, applying it), and the connection base with its factory
(`connection`).  A front end adds its codec and its command table.
"""
