"""Helpers for the EVM follower suites: a deployed platform on a real anvil, bitacorad
processes following it, their "EVM synced" log lines, and the ledger's projections
read back with bitacora-inspect and compared with what the contracts say via eth_call."""

import json
import os
import re
import subprocess
import sys

from harness import Anvil, Daemon, check, wait_for

SYNCED = re.compile(
    r"EVM synced: final block (?P<final>none|\d+ 0x[0-9a-f]{64}), pending tip (?P<tip>none|\d+ 0x[0-9a-f]{64}), "
    r"head (?P<head>\d+); log size (?P<size>\d+) root (?P<root>0x[0-9a-f]{64}); "
    r"pending events (?P<pending>\d+) digest (?P<digest>0x[0-9a-f]{64})")


def tools(options):
    path = os.path.join(options.contracts, "tools")
    if path not in sys.path:
        sys.path.insert(0, path)
    import deploy  # noqa: E402
    import evm  # noqa: E402
    import workload  # noqa: E402
    return deploy, evm, workload


class Platform:
    """anvil with the contracts deployed and a seeded workload generator ready."""

    def __init__(self, options, directory, seed=1, actors=12, anvil_args=()):
        self.options = options
        self.directory = directory
        deploy, evm, workload = tools(options)
        self.evm = evm
        self.anvil = Anvil(options.contracts, directory, anvil_args).start()
        self.rpc = evm.Rpc(self.anvil.url)
        self.artifacts = os.path.join(options.contracts, "out")
        self.deployment = deploy.deploy(self.rpc, self.artifacts)
        self.escrow = self.deployment["contracts"]["P2PEscrow"]
        self.vault = self.deployment["contracts"]["YieldVault"]
        self.workload = workload.Workload(self.rpc, self.deployment, self.artifacts, seed=seed, actor_count=actors)
        self.workload.setup()
        self.escrow_art = evm.Artifact(self.artifacts, "P2PEscrow.sol", "P2PEscrow")
        self.vault_art = evm.Artifact(self.artifacts, "YieldVault.sol", "YieldVault")

    def stop(self):
        try:
            self.rpc.call("evm_setAutomine", True)
        except Exception:
            pass
        self.anvil.stop()

    def waves(self, count, orders=20, vault_ops=6):
        for _ in range(count):
            self.workload._wave(orders, vault_ops)

    def mine(self, blocks):
        self.rpc.call("anvil_mine", hex(blocks))

    def head(self):
        block = self.rpc.call("eth_getBlockByNumber", "latest", False)
        return int(block["number"], 16), block["hash"]

    def resync_workload(self):
        """After a reorg or revert: nonces and share balances from the chain again."""
        w = self.workload
        senders = list(w.nonces)
        counts = self.rpc.batch([("eth_getTransactionCount", [a, "latest"]) for a in senders])
        w.nonces = {a: int(c, 16) for a, c in zip(senders, counts)}
        for actor in w.actors:
            data = self.vault_art.calldata("balanceOf(address)", self.evm.enc_address(actor))
            w.shares[actor] = int(self.rpc.call("eth_call", {"to": self.vault, "data": data}, "latest"), 16)

    def follower_args(self, url=None, extra=()):
        return ["-chain=regtest", "-printtoconsole=0", f"-evmrpc={url or self.anvil.url}",
                f"-escrow={self.escrow}", f"-vault={self.vault}",
                f"-evmstartblock={self.deployment['deploymentBlock']}", "-evmpollinterval=100", "-rpcport=0", *extra]


def start_follower(options, platform, datadir, url=None, extra=()):
    os.makedirs(datadir, exist_ok=True)
    return Daemon(options.bitacorad, datadir, platform.follower_args(url, extra)).start()


def log_path(datadir):
    return os.path.join(datadir, "regtest", "debug.log")


def read_log(datadir):
    try:
        with open(log_path(datadir)) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def last_synced(datadir):
    matches = list(SYNCED.finditer(read_log(datadir)))
    return matches[-1].groupdict() if matches else None


def wait_synced_at(datadir, platform, final_depth=64, timeout_s=120, daemon=None):
    """Waits until the daemon's pending tip is the node's head and its final block is
    head - final_depth (anvil's finalized tag); returns the synced line's fields."""
    def ready():
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"bitacorad exited with {daemon.proc.returncode}: {read_log(datadir)[-3000:]}")
        number, block_hash = platform.head()
        s = last_synced(datadir)
        if s is None or s["tip"] == "none" or s["final"] == "none":
            return None
        tip_number, tip_hash = s["tip"].split()
        final_number = int(s["final"].split()[0])
        if int(tip_number) == number and tip_hash == block_hash and final_number == max(0, number - final_depth):
            return s
        return None
    return wait_for(ready, timeout_s, f"bitacorad in {datadir} to reach the head")


def inspect(options, datadir, queries):
    binary = os.path.join(os.path.dirname(options.bitacorad), "bitacora-inspect")
    out = subprocess.run([binary, os.path.join(datadir, "regtest", "ledger")], input="\n".join(queries) + "\n",
                         capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, f"bitacora-inspect failed: {out.stderr}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def summary(options, datadir):
    return inspect(options, datadir, ["summary"])[0]


def check_projections_match_contracts(options, platform, datadir, block="latest"):
    """Every order, reputation and vault position in the ledger equals the contracts' state."""
    evm = platform.evm
    rpc = platform.rpc
    next_id = int(rpc.call("eth_call", {"to": platform.escrow, "data": platform.escrow_art.calldata("nextOrderId()")},
                           block), 16)
    ids = list(range(1, next_id))
    actors = platform.workload.actors
    answers = inspect(options, datadir, [f"order {i}" for i in ids] + [f"position {a}" for a in actors] +
                      [f"reputation {a}" for a in actors] + ["totals"])
    orders, positions, reputations, totals = (answers[:len(ids)], answers[len(ids):len(ids) + len(actors)],
                                              answers[len(ids) + len(actors):len(ids) + 2 * len(actors)], answers[-1])
    calls = [("eth_call", [{"to": platform.escrow, "data": platform.escrow_art.calldata("getOrder(uint256)",
                                                                                         evm.enc_uint(i))}, block])
             for i in ids]
    calls += [("eth_call", [{"to": platform.vault, "data": platform.vault_art.calldata("balanceOf(address)",
                                                                                       evm.enc_address(a))}, block])
              for a in actors]
    calls += [("eth_call", [{"to": platform.escrow, "data": platform.escrow_art.calldata("reputation(address)",
                                                                                          evm.enc_address(a))}, block])
              for a in actors]
    results = rpc.batch(calls)
    for i, order, raw in zip(ids, orders, results[:len(ids)]):
        words = [raw[2 + 64 * k:2 + 64 * (k + 1)] for k in range(7)]
        seller, expiry, state, buyer, amount = ("0x" + words[0][-40:], int(words[1], 16), int(words[2], 16),
                                                "0x" + words[3][-40:], int(words[4], 16))
        check(order.get("found", True), f"order {i} is missing from the ledger")
        check(order["stateCode"] == state, f"order {i}: ledger state {order['state']}, contract {state}")
        check(order["seller"] == seller.lower() and order["buyer"] == buyer.lower(), f"order {i} parties")
        check(int(order["amount"]) == amount and order["expiry"] == expiry, f"order {i} amount/expiry")
        check(not order["anomalies"] and order["anomaliesDropped"] == 0, f"order {i} has anomalies")
    for actor, position, raw in zip(actors, positions, results[len(ids):len(ids) + len(actors)]):
        shares = int(raw, 16)
        ledger_shares = int(position["shares"]) if position.get("found", True) else 0
        check(ledger_shares == shares, f"vault shares of {actor}: ledger {ledger_shares}, contract {shares}")
    for actor, reputation, raw in zip(actors, reputations, results[len(ids) + len(actors):]):
        expected = int(raw, 16)
        got = reputation["reputation"] if reputation["reputation"] is not None else 50
        check(got == expected, f"reputation of {actor}: ledger {got}, contract {expected}")
    check(totals["anomalies"] == 0, "the ledger recorded anomalies")
    check(totals["orders"] == len(ids), f"{totals['orders']} orders in the ledger, {len(ids)} on chain")
    return len(ids)
