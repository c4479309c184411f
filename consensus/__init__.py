"""Raft as a pure, deterministic state machine (no I/O, no clock, no global randomness).

Modelled on etcd's raft ``RawNode``. The pieces:

- :mod:`consensus.raw_node` — ``RawNode`` (tick, step, propose, propose_conf_change,
  apply_conf_change, transfer_leadership, ready, advance, status) and ``Ready``, whose
  docstring states the shell's contract: persist, then send, then apply, then advance.
- :mod:`consensus.config` — ``Config`` (validated limits, PreVote, CheckQuorum) and the
  test-only ``RaftBugs``.
- :mod:`consensus.types` — the wire and disk values (``Entry``, ``HardState``,
  ``ConfState``, ``Snapshot``, ``Message``, ``ConfChange``) and the batch framing
  ``encode_messages`` / ``decode_messages``.
- :mod:`consensus.ports` — ``RaftStorage`` (implemented by ``consensus.memory`` and
  ``storage.raftlog``), ``RandomSource``, ``RaftLogger``.
- :mod:`consensus.sim` — the deterministic cluster simulator, scripted scenarios and
  checkers (``medledger simulate``).
"""
