"""node.testnet.history: a clean history passes; the histories that planted bugs leave
behind (an ack before the commit was durable, a block applied twice) fail, as do
divergent hashes, gaps and unreadable nodes."""

from __future__ import annotations

import hashlib

from node.testnet.history import Ack, Block, NodeChain, check_history


def _hash(*parts: object) -> str:
    return "0x" + hashlib.sha256(repr(parts).encode()).hexdigest()


def _chain(node: str, blocks: list[tuple[str, ...]], *, salt: str = "") -> NodeChain:
    """Blocks 1..n holding the given tx ids; the hash derives from height and content."""
    made = {height: Block(height, _hash(height, txs, salt), txs)
            for height, txs in enumerate(blocks, start=1)}
    return NodeChain(node, len(blocks), made)


BLOCKS = [("t1", "t2"), ("t3",), ("t4", "t5", "t6")]
ACKS = [Ack("t1", 1, 0), Ack("t2", 1, 1), Ack("t3", 2, 0), Ack("t5", 3, 1)]


def test_identical_chains_with_every_ack_in_place_pass() -> None:
    chains = [_chain(name, BLOCKS) for name in ("v0", "v1", "v2")]
    report = check_history(chains, ACKS)
    assert report.ok, report
    assert report.summary() == {"acknowledged": 4, "lost": 0, "lagging": 0,
                                "divergent_heights": 0,
                                "duplicates": 0, "gaps": 0, "unreadable_nodes": 0, "ok": True}


def test_a_node_behind_the_others_below_no_ack_passes() -> None:
    chains = [_chain("v0", BLOCKS), _chain("v1", [*BLOCKS[:2], BLOCKS[2]])]
    assert check_history(chains, ACKS[:3]).ok


def test_ack_before_durable_commit_is_a_lost_ack_on_every_node() -> None:
    # The leader acknowledged t7 at (4, 0), then crashed before the block was durable on a
    # majority; the survivors committed another block at height 4.
    chains = [_chain(name, [*BLOCKS, ("t8",)]) for name in ("v0", "v1", "v2")]
    report = check_history(chains, [*ACKS, Ack("t7", 4, 0)])
    assert not report.ok
    assert report.lost_txs == 1
    assert {(item.tx_id, item.node, item.found) for item in report.lost} == {
        ("t7", "v0", None), ("t7", "v1", None), ("t7", "v2", None)}


def test_ack_at_the_wrong_position_is_lost_with_where_it_is() -> None:
    chains = [_chain("v0", BLOCKS)]
    report = check_history(chains, [Ack("t4", 3, 2)])
    assert report.lost_txs == 1
    assert report.lost[0].found == (3, 0)


def test_block_applied_twice_is_a_duplicate_and_a_divergence() -> None:
    good = [_chain(name, [*BLOCKS, ("t7",)]) for name in ("v0", "v1")]
    # v2 applied block 2 again as height 3, shifting everything after it.
    twice = _chain("v2", [BLOCKS[0], BLOCKS[1], BLOCKS[1], BLOCKS[2], ("t7",)])
    report = check_history([*good, twice], [*ACKS, Ack("t7", 4, 0)])
    assert not report.ok
    assert report.duplicate_txs == 1
    assert report.duplicates[0].node == "v2"
    assert report.duplicates[0].locations == ((2, 0), (3, 0))
    assert report.divergent_heights == 2  # heights 3 and 4 differ from the others
    assert {item.tx_id for item in report.lost} == {"t5", "t7"}
    assert {item.node for item in report.lost} == {"v2"}


def test_different_hashes_at_one_height_diverge() -> None:
    chains = [_chain("v0", BLOCKS), _chain("v1", BLOCKS, salt="fork")]
    report = check_history(chains, [])
    assert report.divergent_heights == 3
    assert report.divergences[0].hashes[0][0] == "v0"


def test_missing_height_below_head_is_a_gap() -> None:
    chain = _chain("v0", BLOCKS)
    holed = NodeChain("v0", chain.head, {h: b for h, b in chain.blocks.items() if h != 2})
    report = check_history([holed], [])
    assert report.gaps == 1
    assert report.gap_list[0].height == 2


def test_unreadable_node_fails() -> None:
    report = check_history([NodeChain("v0", 0, {}, error="connection refused")], [])
    assert not report.ok
    assert report.unreadable[0].error == "connection refused"


def test_a_node_behind_an_ack_is_lagging_not_lost() -> None:
    chains = [_chain("v0", BLOCKS), _chain("v1", BLOCKS[:2])]
    report = check_history(chains, ACKS)
    assert not report.ok
    assert (report.lost_txs, report.lagging_txs) == (0, 1)
    assert report.lost[0].node == "v1" and report.lost[0].lagging
