"""The p2p room: everything a node says to its peers.

``transport`` is the port the node is written against (send a raft frame, publish and
receive gossip, request/response); ``host`` implements it over py-libp2p (Noise, yamux,
GossipSub, direct streams), with ``connectivity`` (keeping peers connected,
liveness) and ``libp2p_glue`` (the library's seams); ``memory`` implements it in one
process for tests. ``framing``, ``raft_link``, ``gossip`` and ``sync`` are the
protocols; ``identity`` maps node keys to peer ids; ``conduct`` judges peers' input;
``limits`` holds every bound and timing; ``wire`` the messages. Nothing here imports
the node's services.

MEASUREMENTS.md lists 11 pitfalls of py-libp2p 0.8.1; each is mended here or in the
modules of this room, where the mend lives beside the code it concerns:
 1. Noise only in ``sec_opt`` (the default also offers plaintext, secio and TLS).
 2. ``ConnectionConfig(max_connections_per_peer=1)`` (a connect then takes ~5 ms, not
    250 ms).
 3. GossipSub tuned: spam protection and adaptive gossip off, 1 s heartbeat (gossip).
 4. Publishing paced on libp2p's own per-peer queue depth; subscriptions drained at once
    (gossip).
 5. Gossip over GOSSIP_MESSAGE_BYTES_MAX refused with MessageTooLargeError (gossip).
 6. Pubsub and GossipSub services are started before ``host.run()`` (host ``run``).
 7. Shutdown: publishing stops, raft links close and every peer is disconnected before
    the libp2p service contexts are left (host ``run``).
 8. Raft streams are supervised: write deadline, read inactivity with keepalives, resets;
    then disconnect, unblock and redial (raft_link).
 9. ``unblock_peer`` before every dial, so the 60 s failed-dial cache never refuses a
    known peer (connectivity ``_dial`` and raft_link).
10. ``PY_YAMUX_RELEASE_ON_READ=0`` is set in the environment by host, before libp2p is
    imported, unless the operator set it (yamux reads it at call time).
11. Message ids stay from+seqno, which is sound with StrictSign on (gossip).
12. A connection whose close is cut short (a paused or vanished peer) stays in libp2p's
    registry, closed: ``connect`` then returns at once without dialing and every inbound
    connection from that peer is trimmed as a surplus, so the pair never reconnects.
    Closed connections are forgotten on every disconnect and before every dial, and a
    dropped connection leaves the registry even when its close times out
    (connectivity ``drop_connection``). Half-open connections (no FIN, no RST) are found by pinging
    every kept peer (connectivity ``_watch_connection``).
"""
