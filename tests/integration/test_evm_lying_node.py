"""A lying EVM node is caught (-evmverify): a proxy in front of a real anvil forges
topics[0] of a log, or drops a log, in every eth_getLogs answer. With the lying endpoint
alone the daemon stops with a clear error and never appends the lie; with an honest
endpoint beside it, its ledger ends equal to an honest reference's, for blocks caught up
and blocks followed live. The bloom (the default) catches the forged topic; receipts
checked against receiptsRoot catch both; a quorum of endpoints outvotes a lying one."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import Platform, read_log, start_follower, summary, wait_synced_at  # noqa: E402
from harness import check, free_port, main  # noqa: E402
from rpc_proxy import FaultProxy  # noqa: E402


def _same_ledger(options, datadirs):
    summaries = [summary(options, d) for d in datadirs]
    for d, s in zip(datadirs[1:], summaries[1:]):
        for key in ("size", "root", "stateHash", "evmCursor"):
            check(s.get(key) == summaries[0].get(key),
                  f"{key} differs: {datadirs[0]} has {summaries[0].get(key)}, {d} has {s.get(key)}")


def _first_log_block(platform):
    logs = platform.rpc.call("eth_getLogs", {"fromBlock": hex(platform.deployment["deploymentBlock"]),
                                             "toBlock": "latest", "address": [platform.escrow, platform.vault]})
    check(logs, "the workload made no logs")
    return int(logs[0]["blockNumber"], 16)


def _lying_node(options, platform, tmp, verify_args, fault, message, alone_extra=(), both_extra=None):
    """The lie is caught during catch-up (alone: a clear stop) and live (beside an honest node)."""
    if both_extra is None:
        both_extra = [f"-evmrpc={platform.anvil.url}"]
    platform.waves(3)
    platform.mine(70)  # all of it final: a catch-up
    first = _first_log_block(platform)
    proxy = FaultProxy(platform.anvil.url, seed=1, **{fault: first}).start(free_port())
    daemons = []
    try:
        alone = os.path.join(tmp, "alone")
        daemons.append(start_follower(options, platform, alone, url=proxy.url, extra=[*alone_extra, *verify_args]))
        code = daemons[-1].wait(timeout_s=120)
        log = read_log(alone)
        check(code != 0, "bitacorad kept following a node whose answers fail verification")
        check("no -evmrpc endpoint gave answers that pass" in log and message in log,
              "no clear error for a lying node: " + log[-3000:])
        cursor = summary(options, alone).get("evmCursor")
        check(cursor is None or cursor["block"] < first, f"the lied-about block {first} was appended: {cursor}")

        # An honest endpoint beside the liar, listed after it: the lie is refused, the
        # range asked again from the honest one, during catch-up and live follow.
        both = os.path.join(tmp, "both")
        daemons.append(start_follower(options, platform, both, url=proxy.url, extra=[*both_extra, *verify_args]))
        wait_synced_at(both, platform, daemon=daemons[-1], timeout_s=180)
        platform.waves(3)
        platform.mine(70)
        wait_synced_at(both, platform, daemon=daemons[-1], timeout_s=180)
        daemons[-1].stop()
        check(proxy.counts.get(fault.replace("_from", ""), 0) > 0, f"the proxy never lied: {proxy.counts}")
        check(message in read_log(both), "the lies were not noticed: " + read_log(both)[-2000:])

        honest = os.path.join(tmp, "honest")
        daemons.append(start_follower(options, platform, honest))
        wait_synced_at(honest, platform, daemon=daemons[-1])
        daemons[-1].stop()
        _same_ledger(options, [honest, both])
    finally:
        for daemon in daemons:
            daemon.stop()
        proxy.stop()


def test_a_forged_topic_is_caught_by_the_bloom(options, tmp):
    platform = Platform(options, tmp, seed=21)
    try:
        _lying_node(options, platform, tmp, [], "forge_topic_from", "is not in the block's logsBloom")
    finally:
        platform.stop()


def test_a_forged_topic_is_caught_by_the_receipts(options, tmp):
    platform = Platform(options, tmp, seed=22)
    try:
        _lying_node(options, platform, tmp, ["-evmverify=receipts"], "forge_topic_from", "failed -evmverify=receipts")
    finally:
        platform.stop()


def test_a_dropped_log_is_caught_by_the_receipts(options, tmp):
    platform = Platform(options, tmp, seed=23)
    try:
        _lying_node(options, platform, tmp, ["-evmverify=receipts"], "drop_log_from", "eth_getLogs gave")
    finally:
        platform.stop()


def test_a_lying_minority_is_outvoted_by_the_quorum(options, tmp):
    """A dropped log, which no bloom sees: with the liar and one honest endpoint a quorum of
    2 is never reached (a clear stop naming both); beside two honest ones the liar is outvoted."""
    platform = Platform(options, tmp, seed=24)
    try:
        anvil = platform.anvil.url
        _lying_node(options, platform, tmp, ["-evmverify=quorum", "-evmquorum=2"], "drop_log_from", "DIFFERS",
                    alone_extra=[f"-evmrpc={anvil}"],
                    both_extra=[f"-evmrpc={anvil}", f"-evmrpc=http://localhost:{platform.anvil.port}"])
    finally:
        platform.stop()


if __name__ == "__main__":
    main([
        test_a_forged_topic_is_caught_by_the_bloom,
        test_a_forged_topic_is_caught_by_the_receipts,
        test_a_dropped_log_is_caught_by_the_receipts,
        test_a_lying_minority_is_outvoted_by_the_quorum,
    ])
