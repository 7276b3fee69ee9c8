"""Spartan: a chat server and terminal client built on Twisted."""

__version__ = "0.1.0"
