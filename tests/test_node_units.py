"""Node pieces that need no network: mempool, config, key files, wire messages."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from factories import signed

from consensus.state import Role
from ledger.crypto import SigningKey
from ledger.errors import ConfigError
from ledger.results import ResultCode
from ledger.txtypes import TxType
from node.config import config_from_dict, load_config, render_config
from node.keys import raft_node_id, read_key_file, write_key_file
from node.logs import get_logger
from node.mempool import Mempool, order_by_nonce
from node.raft_driver import RaftDriver


def test_mempool_dedupes_bounds_and_orders_by_nonce() -> None:
    key_a, key_b = SigningKey(bytes([1]) * 32), SigningKey(bytes([2]) * 32)
    a3, a1, b1, a2 = (signed(key=key_a, nonce=3), signed(key=key_a, nonce=1),
                      signed(key=key_b, nonce=1), signed(key=key_a, nonce=2))
    pool = Mempool(txs_max=4, bytes_max=10_000)
    for tx in (a3, a1, b1, a2):
        assert pool.add(tx) is ResultCode.OK
    assert pool.add(a1) is ResultCode.DUPLICATE
    assert pool.add(signed(key=key_b, nonce=9)) is ResultCode.MEMPOOL_FULL
    chosen = pool.select(txs_max=10, bytes_max=10_000, now=0.0)
    # signer A's slots (0, 1, 3) get nonces 1, 2, 3; B keeps its slot.
    assert [tx.nonce for tx in chosen] == [1, 2, 1, 3]
    a, b = key_a.public_key, key_b.public_key
    assert [tx.signer for tx in chosen] == [a, a, b, a]
    assert pool.select(txs_max=10, bytes_max=10_000, now=0.0) == []  # all in flight
    assert pool.release_inflight([a1.tx_id]) == 1
    assert pool.select(txs_max=10, bytes_max=10_000, now=0.0) == [a1]
    assert pool.remove_committed([a1.tx_id, a2.tx_id]) == 2
    assert len(pool) == 2 and pool.size_bytes == len(a3.raw) + len(b1.raw)
    pool.release_inflight()
    chosen = pool.select(txs_max=1, bytes_max=10_000, now=0.0)
    assert {tx.tx_id for tx in chosen} <= {a3.tx_id, b1.tx_id}


def test_mempool_holds_gossiped_txs_until_their_owner_forwards_them() -> None:
    """A tx known only from gossip is neither proposed nor forwarded: gossip may deliver a
    signer's later nonces without the earlier ones, which their owner forwards in order."""
    key, other = SigningKey(bytes([4]) * 32), SigningKey(bytes([5]) * 32)
    early, late, unrelated = (signed(key=key, nonce=1), signed(key=key, nonce=2),
                              signed(key=other, nonce=1))
    pool = Mempool(txs_max=10, bytes_max=10_000, hold_s=30.0)
    assert pool.add(late, held_since=100.0) is ResultCode.OK  # gossip got here first
    assert pool.add(unrelated) is ResultCode.OK
    assert pool.select(txs_max=10, bytes_max=10_000, now=101.0) == [unrelated]
    assert pool.forwardable(101.0) == [unrelated]
    assert pool.statistics().held_txs == 1
    # The owner forwards both, in order: released in that order, after what came before.
    assert pool.add(early) is ResultCode.OK
    assert pool.add(late) is ResultCode.DUPLICATE
    assert pool.statistics().held_txs == 0
    assert pool.forwardable(102.0) == [unrelated, early, late]
    assert [tx.nonce for tx in pool.select(txs_max=1, bytes_max=10_000, now=102.0)] == [1]
    # A held tx whose owner never comes leaves the pool after hold_s, unproposed.
    orphan = signed(key=key, nonce=3)
    pool.add(orphan, held_since=200.0)
    assert orphan not in pool.forwardable(229.0) and orphan.tx_id in pool
    assert orphan not in pool.select(txs_max=10, bytes_max=10_000, now=230.0)
    assert orphan.tx_id not in pool and pool.statistics().held_txs == 0


def test_mempool_waits_for_a_held_lower_nonce_before_proposing_later_ones() -> None:
    """A relay that knew a signer's nonce 1 only from gossip forwards nonces 2 and 3
    without it; proposing them would make nonce 1 NONCE_STALE when its owner's forward
    comes. They wait for it (or for its hold to expire); other signers do not wait."""
    key, other = SigningKey(bytes([6]) * 32), SigningKey(bytes([7]) * 32)
    first, second, third = (signed(key=key, nonce=n) for n in (1, 2, 3))
    unrelated = signed(key=other, nonce=1)
    pool = Mempool(txs_max=10, bytes_max=10_000, hold_s=30.0)
    assert pool.add(first, held_since=100.0) is ResultCode.OK  # gossip
    for tx in (second, third, unrelated):
        assert pool.add(tx) is ResultCode.OK  # a relay's forward
    assert pool.select(txs_max=10, bytes_max=10_000, now=101.0) == [unrelated]
    assert pool.add(first) is ResultCode.DUPLICATE  # the owner's forward: released
    assert [tx.nonce for tx in pool.select(txs_max=10, bytes_max=10_000, now=102.0)] == [
        1, 2, 3]
    # An earlier nonce whose owner never comes stops nothing beyond its hold.
    later = Mempool(txs_max=10, bytes_max=10_000, hold_s=30.0)
    later.add(first, held_since=100.0)
    later.add(second)
    assert later.select(txs_max=10, bytes_max=10_000, now=129.0) == []
    assert later.select(txs_max=10, bytes_max=10_000, now=130.0) == [second]


def test_mempool_byte_bound() -> None:
    tx = signed()
    pool = Mempool(txs_max=100, bytes_max=len(tx.raw))
    assert pool.add(tx) is ResultCode.OK
    assert pool.add(signed(nonce=2)) is ResultCode.MEMPOOL_FULL


def test_order_by_nonce_keeps_other_signers_in_place() -> None:
    key = SigningKey(bytes([3]) * 32)
    txs = [signed(key=key, nonce=n) for n in (5, 4)] + [signed(TxType.VOTE)]
    assert [tx.nonce for tx in order_by_nonce(txs)] == [4, 5, 1]


def test_config_defaults_env_overrides_and_errors(tmp_path: Path) -> None:
    config = config_from_dict({}, environ={})
    assert config.rpc.host == "127.0.0.1" and config.consensus.tick_ms == 50
    config = config_from_dict({"rpc": {"port": 9000}},
                              environ={"MEDLEDGER_RPC_PORT": "9100",
                                       "MEDLEDGER_P2P_BOOTSTRAP": "/ip4/1/tcp/2,/ip4/3/tcp/4"})
    assert config.rpc.port == 9100
    assert config.p2p.bootstrap == ("/ip4/1/tcp/2", "/ip4/3/tcp/4")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) prot"):
        config_from_dict({"rpc": {"prot": 1}}, environ={})
    with pytest.raises(ConfigError, match="unknown section"):
        config_from_dict({"rcp": {}}, environ={})
    with pytest.raises(ConfigError, match="expected an integer"):
        config_from_dict({"rpc": {"port": "x"}}, environ={})
    with pytest.raises(ConfigError, match="election_ticks"):
        config_from_dict({"consensus": {"election_ticks": 1}}, environ={})
    path = tmp_path / "node.toml"
    path.write_text(render_config(config))
    assert load_config(path, environ={}).rpc == config.rpc
    path.write_text("[rpc\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_key_files(tmp_path: Path) -> None:
    key = SigningKey.generate()
    write_key_file(tmp_path / "node.key", key)
    assert read_key_file(tmp_path / "node.key") == key
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_key_file(tmp_path / "node.key", key)
    (tmp_path / "bad.key").write_text("zz")
    with pytest.raises(ConfigError, match="not hex"):
        read_key_file(tmp_path / "bad.key")
    assert raft_node_id(key.public_key) == raft_node_id(key.public_key) > 0
    assert raft_node_id(key.public_key) != raft_node_id(SigningKey.generate().public_key)


class _HandoverRawNode:
    """A leader's raw node whose peers answer only after ``active_after`` status reads:
    the window after check-quorum, when the leader has forgotten who is active."""

    def __init__(self, active_after: int) -> None:
        self.reads, self.active_after = 0, active_after
        self.role, self.transferred_to = Role.LEADER, None

    def status(self) -> Any:
        self.reads += 1
        active = self.reads > self.active_after
        peers = [SimpleNamespace(node_id=node_id, match=match, recent_active=active)
                 for node_id, match in ((2, 10), (3, 9))]
        return SimpleNamespace(node_id=1, soft_state=SimpleNamespace(role=self.role),
                               conf_state=SimpleNamespace(voters=(1, 2, 3)), peers=peers)

    def transfer_leadership(self, target: int) -> None:
        self.transferred_to = target


async def test_a_stop_in_the_check_quorum_window_still_hands_leadership_over() -> None:
    raw = _HandoverRawNode(active_after=5)
    driver = object.__new__(RaftDriver)
    driver.raw_node, driver.role = raw, Role.LEADER  # type: ignore[assignment]
    driver._wakeup, driver._log = trio.Event(), get_logger()
    driver._peer_of = lambda node_id: f"peer-{node_id}"

    async def follower_soon() -> None:
        while raw.transferred_to is None:
            await trio.sleep(0.001)
        driver.role = Role.FOLLOWER  # the transferee won its election

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower_soon)
        target = await driver.hand_over_leadership(timeout_s=5.0)
        nursery.cancel_scope.cancel()
    # Before: no peer active at the first look, so no handover at all.
    assert target == raw.transferred_to == 2  # the furthest-matching voter
