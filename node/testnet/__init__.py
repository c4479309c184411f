"""``medledger testnet``: a multi-host chaos testnet in network namespaces (root only).

Modules: ``netns`` (hosts, bridge, faults, cleanup), ``schedule`` (the seeded fault plan),
``history`` (the history checker), ``cluster`` (a consortium set up through the CLI),
``run`` (orchestration), ``timeline`` (recovery times), ``report`` (the JSON line and the
HTML report) and ``plants`` (bugs planted in a node, to test the checker).
"""

# The bugs ``medledger testnet --plant`` can plant in the first validator (node.testnet.plants).
PLANTS = ("ack-early", "apply-twice")
