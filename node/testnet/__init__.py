"""``medledger testnet``: a multi-host chaos testnet in network namespaces (root only).

Modules: ``netns`` (hosts, bridge, faults, cleanup), ``schedule`` (the seeded fault plan),
``history`` (the history checker), ``cluster`` (a consortium set up through the CLI),
``run`` (orchestration) and ``report`` (the JSON line and the HTML report).
"""
