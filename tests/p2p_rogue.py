"""A rogue peer, run as its own process by tests/test_node_integration.py.

Given a running validator's multiaddr it (1) connects with a fresh key that no genesis
lists, over Noise, opens the raft protocol and writes a frame of vote requests at term
10**6; (2) dials with a host that offers only the plaintext security transport. It prints
one JSON line: what happened to the raft stream and whether the plaintext dial connected.
"""

from __future__ import annotations

import json
import os
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from consensus.types import Message, MessageType, encode_messages
from node.keys import raft_node_id
from node.p2p.framing import encode_frame
from node.p2p.identity import public_key_from_peer_id
from node.p2p.limits import RAFT_PROTOCOL

ROGUE_TERM = 10**6


async def try_raft(target: str) -> str:
    key_pair = create_new_key_pair(os.urandom(32))
    host = new_host(key_pair=key_pair,
                    listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    target_raft_id = raft_node_id(public_key_from_peer_id(info.peer_id.to_base58()))
    rogue_raft_id = raft_node_id(key_pair.public_key.to_bytes())
    frame = encode_frame(encode_messages([
        Message(type=MessageType.VOTE, to=target_raft_id, from_=rogue_raft_id,
                term=ROGUE_TERM, log_term=ROGUE_TERM, index=10**9),
    ]))
    outcome = "accepted?"
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with trio.move_on_after(20):
            try:
                await host.connect(info)
            except Exception as error:
                return f"no-connection: {error!r}"
            try:
                stream = await host.new_stream(info.peer_id, [TProtocol(RAFT_PROTOCOL)])
            except Exception:
                return "no-stream"
            try:
                for _ in range(5):
                    await stream.write(frame)
                    await trio.sleep(0.2)
                answer = await stream.read(1)
                outcome = "reset" if not answer else "refused"
            except Exception:
                outcome = "reset"
    return outcome


async def try_plaintext(target: str) -> bool:
    key_pair = create_new_key_pair(os.urandom(32))
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with trio.move_on_after(15):
            try:
                await host.connect(info)
            except Exception:
                return False
            return bool(host.get_network().connections.get(info.peer_id))
    return False


async def main(target: str) -> None:
    raft = await try_raft(target)
    plaintext = await try_plaintext(target)
    print(json.dumps({"raft": raft, "plaintext_connected": plaintext}))


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
