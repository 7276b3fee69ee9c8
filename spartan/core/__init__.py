"""
The chat domain: users and groups (`directory`), who may log in (`auth`), sessions,
conversations, buffers and delivery (`chat`), and the words they are named with (`names`).
Nothing here knows of sockets or wire formats; front ends call `Session`, and the domain
pushes to them through the small `Client` interface.
"""
