"""Deterministic testing tools for the Raft core: the cluster simulator (VOPR style), the
scripted interaction environment, and the checkers. Pure: no clock, sockets or threads;
randomness only from a ``random.Random`` seeded here."""
