"""The EVM follower against a real anvil: following live and catching up agree with each
other and with the contracts; reorgs (anvil_reorg, evm_snapshot/evm_revert) during
catch-up and live follow; a faulty RPC provider; kill -9; and the start-up checks."""

import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import (Platform, check_projections_match_contracts, read_log, start_follower,  # noqa: E402
                       summary, wait_synced_at)
from harness import check, free_port, main  # noqa: E402
from rpc_proxy import FaultProxy  # noqa: E402


def _same_ledger(options, datadirs):
    """Equal size, root and projection state hash across data dirs (daemons stopped)."""
    summaries = [summary(options, d) for d in datadirs]
    for d, s in zip(datadirs[1:], summaries[1:]):
        for key in ("size", "root", "stateHash", "evmCursor"):
            check(s.get(key) == summaries[0].get(key),
                  f"{key} differs: {datadirs[0]} has {summaries[0].get(key)}, {d} has {s.get(key)}")
    return summaries[0]


def _fresh_index(options, platform, tmp, name="fresh"):
    """A second daemon that indexes the final chain from scratch; returns its synced line."""
    datadir = os.path.join(tmp, name)
    daemon = start_follower(options, platform, datadir)
    try:
        synced = wait_synced_at(datadir, platform, daemon=daemon)
    finally:
        daemon.stop()
    return datadir, synced


def test_live_follow_and_catch_up_agree_with_each_other_and_the_contracts(options, tmp):
    platform = Platform(options, tmp, seed=3)
    live = None
    try:
        live_dir = os.path.join(tmp, "live")
        live = start_follower(options, platform, live_dir)
        platform.waves(6)  # 30 blocks of orders and vault operations, followed as they come
        platform.mine(70)  # everything final
        live_synced = wait_synced_at(live_dir, platform, daemon=live)
        live.stop()
        check(int(live_synced["size"]) > 300, f"only {live_synced['size']} events in the log")
        orders = check_projections_match_contracts(options, platform, live_dir)
        check(orders == 6 * 20, f"{orders} orders on chain")
        log = read_log(live_dir)
        check("EVM reconciled at block" in log, "reconciliation did not run: " + log[-2000:])
        check("DRIFT" not in log, "reconciliation reported drift")

        fresh_dir, fresh_synced = _fresh_index(options, platform, tmp)
        check(fresh_synced["digest"] == live_synced["digest"], "pending overlays differ")
        _same_ledger(options, [live_dir, fresh_dir])
        check("EVM catch-up done" in read_log(fresh_dir) or "EVM synced" in read_log(fresh_dir), "fresh index")
    finally:
        if live:
            live.stop()
        platform.stop()


def test_reorgs_during_catch_up_and_live_follow_equal_a_fresh_index(options, tmp):
    platform = Platform(options, tmp, seed=5)
    rng = random.Random(5)
    daemons = []
    proxy = None
    try:
        platform.waves(16)  # 80 blocks: some of them final before the daemons start
        live_dir = os.path.join(tmp, "live")
        daemons.append(start_follower(options, platform, live_dir))
        wait_synced_at(live_dir, platform, daemon=daemons[0])
        # The second daemon catches up slowly (2 blocks per eth_getLogs, 30 ms a request)
        # while the reorgs happen.
        proxy = FaultProxy(platform.anvil.url, seed=5, latency_s=0.03, getlogs_blocks_max=2).start(free_port())
        slow_dir = os.path.join(tmp, "slow")
        daemons.append(start_follower(options, platform, slow_dir, url=proxy.url, extra=["-evmlogrange=2"]))
        for depth in range(1, 21):
            platform.waves(1)
            if depth % 5 == 0:
                snapshot = platform.rpc.call("evm_snapshot")
                platform.waves(1)
                time.sleep(rng.uniform(0.05, 0.4))
                check(platform.rpc.call("evm_revert", snapshot) is True, "evm_revert")
                platform.resync_workload()
                platform.waves(1)
            time.sleep(rng.uniform(0.0, 0.3))  # let the live daemon see the blocks (or not)
            platform.rpc.call("anvil_reorg", depth, [])
            platform.resync_workload()
        platform.mine(70)
        live_synced = wait_synced_at(live_dir, platform, daemon=daemons[0])
        slow_synced = wait_synced_at(slow_dir, platform, daemon=daemons[1], timeout_s=240)
        for daemon in daemons:
            daemon.stop()
        check("EVM reorg: rolled back" in read_log(live_dir), "the live daemon saw no reorg")
        check_projections_match_contracts(options, platform, live_dir)
        fresh_dir, fresh_synced = _fresh_index(options, platform, tmp)
        check(live_synced["digest"] == fresh_synced["digest"] == slow_synced["digest"], "pending overlays differ")
        _same_ledger(options, [fresh_dir, live_dir, slow_dir])
    finally:
        for daemon in daemons:
            daemon.stop()
        if proxy:
            proxy.stop()
        platform.stop()


def test_a_reorg_below_the_final_block_stops_the_follower_and_leaves_the_ledger(options, tmp):
    platform = Platform(options, tmp, seed=7)
    daemon = None
    try:
        platform.waves(3)
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, platform, datadir, extra=["-evmfinality=2"])
        synced = wait_synced_at(datadir, platform, final_depth=2, daemon=daemon)
        platform.rpc.call("anvil_reorg", 6, [])
        code = daemon.wait(timeout_s=30)
        check(code != 0, "bitacorad kept running after a reorg below its final block")
        log = read_log(datadir)
        check("reorg below the final block" in log, "no clear error for a reorg below the final block")
        after = summary(options, datadir)
        check(after["size"] == int(synced["size"]) and after["root"] == synced["root"], "the ledger changed")
        # It also refuses to start on that chain again, leaving the data alone.
        daemon = start_follower(options, platform, datadir, extra=["-evmfinality=2"])
        check(daemon.wait(timeout_s=30) != 0, "bitacorad started on a chain that reorged its final blocks")
        check(summary(options, datadir)["root"] == synced["root"], "the ledger changed on restart")
    finally:
        if daemon:
            daemon.stop()
        platform.stop()


def test_wrong_chain_id_or_another_chain_refuse_to_start(options, tmp):
    os.makedirs(os.path.join(tmp, "a"))
    first = Platform(options, os.path.join(tmp, "a"), seed=9)
    second = None
    daemon = None
    try:
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, first, datadir, extra=["-evmchainid=8453"])
        check(daemon.wait(timeout_s=30) == 1, "a chain id mismatch did not stop start-up")
        check("refusing to index another chain" in read_log(datadir), "no clear chain id error")

        first.waves(1)
        first.mine(70)  # the start block is final: its hash is remembered
        daemon = start_follower(options, first, datadir)
        wait_synced_at(datadir, first, daemon=daemon)
        daemon.stop()

        os.makedirs(os.path.join(tmp, "b"))
        # Same deployer, so the same contract addresses, but another genesis block.
        second = Platform(options, os.path.join(tmp, "b"), seed=9, anvil_args=["--timestamp", "1700000000"])
        second.mine(70)
        daemon = start_follower(options, second, datadir)
        check(daemon.wait(timeout_s=30) == 1, "bitacorad followed a different chain into the same data dir")
        check("a different chain; refusing to start" in read_log(datadir),
              "no clear different-chain error: " + read_log(datadir)[-1500:])
    finally:
        if daemon:
            daemon.stop()
        first.stop()
        if second:
            second.stop()


def test_a_faulty_provider_never_makes_it_write_wrong_data(options, tmp):
    platform = Platform(options, tmp, seed=11)
    proxy = None
    daemon = None
    try:
        platform.waves(8)
        platform.mine(30)
        proxy = FaultProxy(platform.anvil.url, seed=11, http_500=0.05, stall=0.02, stall_s=2.0, truncate=0.05,
                           rate_limit=0.03, not_json=0.03, bad_header_hash=0.05, bad_log_hash=0.15,
                           getlogs_blocks_max=3, force_first=True).start(free_port())
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, platform, datadir, url=proxy.url,
                                extra=["-evmrpctimeout=1000", "-evmlogrange=20"])
        time.sleep(2)  # catching up through the faults
        platform.waves(4)  # and following live through them
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon, timeout_s=120)
        daemon.stop()
        for fault in ("http_500", "stall", "truncate", "rate_limit", "not_json", "bad_header_hash", "bad_log_hash",
                      "range_error"):
            check(proxy.counts.get(fault, 0) > 0, f"the proxy never injected {fault}: {proxy.counts}")
        log = read_log(datadir)
        check("inconsistent answer" in log, "hash mismatches were not noticed")
        check("range limited by the node" in log, "range errors were not understood")
        check_projections_match_contracts(options, platform, datadir)
        fresh_dir, _ = _fresh_index(options, platform, tmp)
        _same_ledger(options, [fresh_dir, datadir])
    finally:
        if daemon:
            daemon.stop()
        if proxy:
            proxy.stop()
        platform.stop()


def test_kill_9_during_catch_up_and_live_follow_loses_and_duplicates_nothing(options, tmp):
    platform = Platform(options, tmp, seed=13)
    rng = random.Random(13)
    proxy = None
    daemon = None
    try:
        platform.waves(14)
        platform.mine(80)
        proxy = FaultProxy(platform.anvil.url, seed=13, latency_s=0.01, getlogs_blocks_max=2).start(free_port())
        datadir = os.path.join(tmp, "node")
        kills = 0
        for _ in range(4):  # during the (slowed) catch-up
            daemon = start_follower(options, platform, datadir, url=proxy.url, extra=["-evmlogrange=2"])
            time.sleep(rng.uniform(0.3, 1.2))
            daemon.signal(signal.SIGKILL)
            daemon.wait()
            kills += 1
        proxy.set_faults(latency_s=0.0, getlogs_blocks_max=None)
        for _ in range(4):  # during live follow
            daemon = start_follower(options, platform, datadir, url=proxy.url)
            wait_synced_at(datadir, platform, daemon=daemon)
            platform.waves(1)
            time.sleep(rng.uniform(0.0, 0.3))
            daemon.signal(signal.SIGKILL)
            daemon.wait()
            kills += 1
        platform.mine(70)
        daemon = start_follower(options, platform, datadir)
        wait_synced_at(datadir, platform, daemon=daemon)
        daemon.stop()
        check(kills == 8, "kills")
        check_projections_match_contracts(options, platform, datadir)
        fresh_dir, _ = _fresh_index(options, platform, tmp)
        _same_ledger(options, [fresh_dir, datadir])
    finally:
        if daemon:
            daemon.stop()
        if proxy:
            proxy.stop()
        platform.stop()


if __name__ == "__main__":
    main([
        test_live_follow_and_catch_up_agree_with_each_other_and_the_contracts,
        test_reorgs_during_catch_up_and_live_follow_equal_a_fresh_index,
        test_a_reorg_below_the_final_block_stops_the_follower_and_leaves_the_ledger,
        test_wrong_chain_id_or_another_chain_refuse_to_start,
        test_a_faulty_provider_never_makes_it_write_wrong_data,
        test_kill_9_during_catch_up_and_live_follow_loses_and_duplicates_nothing,
    ])
