"""The Trio shell: service tree, p2p, raft driver, mempool, RPC, CLI."""
