"""Pending views around reorgs, on a real anvil (issue 13): a reorg onto a shorter chain
is seen within one poll; pending events carry ids that cannot be taken for final
indices; the ZMQ stream announces what it later rolls back, gives off-chain kinds their
own topics and tells a restart from a gap."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import Platform, read_log, start_follower, wait_synced_at  # noqa: E402
from harness import check, free_port, main, wait_for  # noqa: E402
from test_api import Api  # noqa: E402

POLL_MS = 1000


def _status(api):
    return api.call("bitacora_status")


def _evm(status):
    return status["sources"]["evm"]


def _orphan_wave(platform, datadir, daemon, api):
    """Snapshot, one wave of orders followed as pending, then back to the snapshot:
    returns (snapshot head, old pending tip, ids of the orders only the old chain has)."""
    base, _ = platform.head()
    snapshot = platform.rpc.call("evm_snapshot")
    orders = platform.workload._wave(6, 2)
    tip, tip_hash = platform.head()
    wait_for(lambda: f"pending tip {tip} {tip_hash}" in read_log(datadir), 60, "the follower at the head")
    ids = [str(o["id"]) for o in orders]
    check(api.call("escrow_getOrder", ids[0])["status"] == "pending", "the wave's orders are pending")
    check(platform.rpc.call("evm_revert", snapshot) is True, "evm_revert")
    return base, tip, ids


def test_a_reorg_onto_a_shorter_chain_is_seen_within_one_poll(options, tmp):
    platform = Platform(options, tmp, seed=31)
    daemon = None
    try:
        platform.waves(1)
        platform.mine(70)
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, platform, datadir, extra=[f"-evmpollinterval={POLL_MS}"])
        wait_synced_at(datadir, platform, daemon=daemon)
        api = Api(datadir)
        base, old_tip, orphans = _orphan_wave(platform, datadir, daemon, api)
        check(old_tip - base >= 3, f"the wave took {old_tip - base} blocks")
        platform.resync_workload()
        platform.mine(old_tip - base - 1)  # a new chain, one block shorter than the old
        new_head, new_hash = platform.head()
        started = time.monotonic()

        def rolled_back():
            evm = _evm(_status(api))
            return evm if evm["pendingTip"] == new_head and evm["reorgs"] >= 1 else None
        evm = wait_for(rolled_back, 30, f"pendingTip {new_head} (below the old tip {old_tip}) and a reorg counted")
        seen_s = time.monotonic() - started
        print(f"shorter chain (head {new_head} < old tip {old_tip}) seen after {seen_s:.2f} s "
              f"(poll interval {POLL_MS / 1000:.1f} s)")
        check(seen_s < POLL_MS / 1000 + 1.0, f"the reorg took {seen_s:.2f} s to be seen, over one poll interval")
        for order_id in orphans:
            check(api.error("escrow_getOrder", order_id) == -32001, f"orphaned order {order_id} is still served")
        check(evm["finalBlock"] is None or evm["finalBlock"] < new_head, "final block")
        # The new chain is followed from there on.
        platform.mine(2)
        head, head_hash = platform.head()
        wait_for(lambda: f"pending tip {head} {head_hash}" in read_log(datadir), 30, "the follower on the new chain")
        check(f"shorter" in read_log(datadir) or "EVM reorg: rolled back" in read_log(datadir), "the reorg is logged")
    finally:
        if daemon:
            daemon.stop()
        platform.stop()


if __name__ == "__main__":
    main([test_a_reorg_onto_a_shorter_chain_is_seen_within_one_poll])
