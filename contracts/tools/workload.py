#!/usr/bin/env python3
"""Drives the deployed contracts on anvil through every path, deterministically from a
seed, as fast as anvil allows: automining off, transactions sent in JSON-RPC batches
from impersonated actors, hundreds of transactions per mined block.

    workload.py --rpc http://127.0.0.1:8545 --deployment deployments/anvil.json \
                --seed 7 --orders 1000 --vault-ops 300

Order paths: complete (create, confirm, release), dispute won by the buyer, dispute
won by the seller, cancel, and expiry (time is advanced past the expiry, then anyone
refunds). Vault: deposits and partial redeems by the same actors while interest
accrues. Orders run in waves; within a wave each step is one block, so one block
holds hundreds of events. Every receipt is checked; a reverted transaction stops the
run with its hash. Prints (and with --report writes) counts of events by kind and the
events per second reached.

Start anvil with a large block gas limit (--gas-limit 10000000000) for the best rate;
the tool sizes its blocks to whatever limit the chain has."""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm import (ARTIFACTS_DEFAULT, Artifact, Rpc, RpcError, enc_address, enc_bool,  # noqa: E402
                 enc_bytes32, enc_uint, keccak)

PATHS = ("complete", "dispute_buyer", "dispute_seller", "cancel", "expire")
PATH_WEIGHTS = (50, 10, 10, 15, 15)
GAS_PER_TX = 400_000
EXPIRY_S = 3600
WAVE_ORDERS_DEFAULT = 150  # anvil slows down superlinearly with thousands of pending transactions


class Workload:
    def __init__(self, rpc, deployment, artifacts_dir, seed, actor_count):
        self.rpc = rpc
        self.rng = random.Random(seed)
        self.seed = seed
        self.contracts = deployment["contracts"]
        self.arbiter = deployment["arbiter"]
        self.escrow_art = Artifact(artifacts_dir, "P2PEscrow.sol", "P2PEscrow")
        self.vault_art = Artifact(artifacts_dir, "YieldVault.sol", "YieldVault")
        self.usdc_art = Artifact(artifacts_dir, "MockUSDC.sol", "MockUSDC")
        self.topics = {}
        for name, art in (("P2PEscrow", self.escrow_art), ("YieldVault", self.vault_art)):
            address = self.contracts[name].lower()
            for topic, event in art.events().items():
                self.topics[(address, topic)] = event
        self.order_created_topic = next(t for (a, t), e in self.topics.items() if e == "OrderCreated")
        self.deposit_topic = next(t for (a, t), e in self.topics.items() if e == "Deposit")
        # Actors derive from the seed, so two runs with one seed send identical transactions.
        self.actors = ["0x" + keccak(f"bitacora-actor-{seed}-{i}".encode())[-20:].hex() for i in range(actor_count)]
        self.shares = {actor: 0 for actor in self.actors}
        self.events = {}
        self.nonces = {}
        self.transactions = 0
        self.blocks = 0
        block = rpc.call("eth_getBlockByNumber", "latest", False)
        self.txs_per_block_max = max(1, int(block["gasLimit"], 16) // GAS_PER_TX)

    # ----- transport -----

    def _tx(self, sender, to, data):
        # Explicit nonces: anvil serves a batch concurrently, and two transactions of one
        # sender in a batch would otherwise race for the same pending nonce.
        nonce = self.nonces[sender]
        self.nonces[sender] = nonce + 1
        return ("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(GAS_PER_TX),
                                         "nonce": hex(nonce)}])

    def _mine_step(self, txs):
        """Sends txs, mines them (as many blocks as the gas limit needs), checks every receipt."""
        receipts = []
        for start in range(0, len(txs), self.txs_per_block_max):
            chunk = txs[start:start + self.txs_per_block_max]
            hashes = self.rpc.batch(chunk)
            self.rpc.call("evm_mine")
            self.blocks += 1
            chunk_receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            for tx_hash, receipt in zip(hashes, chunk_receipts):
                if receipt is None:
                    raise RpcError(f"transaction {tx_hash} was not mined")
                if int(receipt["status"], 16) != 1:
                    raise RpcError(f"transaction {tx_hash} reverted")
                for log in receipt["logs"]:
                    name = self.topics.get((log["address"].lower(), log["topics"][0]))
                    if name is not None:
                        self.events[name] = self.events.get(name, 0) + 1
            receipts.extend(chunk_receipts)
            self.transactions += len(chunk)
        return receipts

    # ----- set-up -----

    def setup(self):
        self.rpc.call("anvil_autoImpersonateAccount", True)
        self.rpc.call("evm_setAutomine", False)
        senders = self.actors + [self.arbiter]
        self.rpc.batch([("anvil_setBalance", [a, hex(10**24)]) for a in senders])
        counts = self.rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in senders])
        self.nonces = {a: int(c, 16) for a, c in zip(senders, counts)}
        usdc = self.contracts["MockUSDC"]
        txs = []
        for actor in self.actors:
            txs.append(self._tx(actor, usdc, self.usdc_art.calldata(
                "mint(address,uint256)", enc_address(actor), enc_uint(10**18))))
            for spender in (self.contracts["P2PEscrow"], self.contracts["YieldVault"]):
                txs.append(self._tx(actor, usdc, self.usdc_art.calldata(
                    "approve(address,uint256)", enc_address(spender), enc_uint((1 << 256) - 1))))
        self._mine_step(txs)

    # ----- one wave of orders and vault operations -----

    def _wave(self, order_count, vault_count):
        escrow = self.contracts["P2PEscrow"]
        vault = self.contracts["YieldVault"]
        now = int(self.rpc.call("eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        orders = []
        txs = []
        for _ in range(order_count):
            seller, buyer = self.rng.sample(self.actors, 2)
            path = self.rng.choices(PATHS, PATH_WEIGHTS)[0]
            amount = self.rng.randint(1, 5000) * 10**6 + self.rng.randint(0, 999_999)
            orders.append({"seller": seller, "buyer": buyer, "path": path})
            txs.append(self._tx(seller, escrow, self.escrow_art.calldata(
                "createOrder(address,uint256,uint64)", enc_address(buyer), enc_uint(amount),
                enc_uint(now + EXPIRY_S))))
        deposits = vault_count - vault_count // 2
        for _ in range(deposits):
            actor = self.rng.choice(self.actors)
            txs.append(self._tx(actor, vault, self.vault_art.calldata(
                "deposit(uint256,address)", enc_uint(self.rng.randint(1, 20_000) * 10**6), enc_address(actor))))
        receipts = self._mine_step(txs)
        for order, receipt in zip(orders, receipts):
            created = next(l for l in receipt["logs"] if l["topics"][0] == self.order_created_topic)
            order["id"] = int(created["topics"][1], 16)
        for receipt in receipts[len(orders):]:
            deposit = next(l for l in receipt["logs"] if l["topics"][0] == self.deposit_topic)
            owner = "0x" + deposit["topics"][2][-40:]
            self.shares[owner] += int(deposit["data"][2 + 64:2 + 128], 16)

        # Step 2: buyers confirm payment; sellers cancel.
        txs = []
        for o in orders:
            if o["path"] == "cancel":
                txs.append(self._tx(o["seller"], escrow, self.escrow_art.calldata("cancel(uint256)", enc_uint(o["id"]))))
            elif o["path"] != "expire":
                proof = keccak(f"fiat-proof-{self.seed}-{o['id']}".encode())
                txs.append(self._tx(o["buyer"], escrow, self.escrow_art.calldata(
                    "confirmPayment(uint256,bytes32)", enc_uint(o["id"]), enc_bytes32(proof))))
        self._mine_step(txs)

        # Step 3: sellers release; either party disputes; holders redeem part of their shares.
        txs = []
        for o in orders:
            if o["path"] == "complete":
                txs.append(self._tx(o["seller"], escrow, self.escrow_art.calldata("release(uint256)", enc_uint(o["id"]))))
            elif o["path"].startswith("dispute"):
                party = o["buyer"] if self.rng.random() < 0.5 else o["seller"]
                txs.append(self._tx(party, escrow, self.escrow_art.calldata("dispute(uint256)", enc_uint(o["id"]))))
        holders = [a for a in self.actors if self.shares[a] > 1]
        for _ in range(min(vault_count // 2, len(holders))):
            actor = self.rng.choice(holders)
            shares = self.shares[actor] // 2
            if shares == 0:
                continue
            self.shares[actor] -= shares
            txs.append(self._tx(actor, vault, self.vault_art.calldata(
                "redeem(uint256,address,address)", enc_uint(shares), enc_address(actor), enc_address(actor))))
        self._mine_step(txs)

        # Step 4: the arbiter resolves disputes.
        txs = [self._tx(self.arbiter, escrow, self.escrow_art.calldata(
            "resolveDispute(uint256,bool)", enc_uint(o["id"]), enc_bool(o["path"] == "dispute_buyer")))
            for o in orders if o["path"].startswith("dispute")]
        self._mine_step(txs)

        # Step 5: time passes (interest accrues), expired orders are refunded by anyone.
        self.rpc.call("evm_increaseTime", EXPIRY_S + 1)
        txs = [self._tx(self.rng.choice(self.actors), escrow, self.escrow_art.calldata(
            "refundExpired(uint256)", enc_uint(o["id"]))) for o in orders if o["path"] == "expire"]
        if txs:
            self._mine_step(txs)
        else:
            # Mine anyway: the next wave reads "now" from the latest block, and expiries
            # computed before the time jump would already be past.
            self.rpc.call("evm_mine")
            self.blocks += 1
        return orders

    def run(self, order_count, vault_count, wave_orders):
        paths = {p: 0 for p in PATHS}
        waves = max(1, -(-order_count // wave_orders))
        for wave in range(waves):
            n = order_count // waves + (1 if wave < order_count % waves else 0)
            v = vault_count // waves + (1 if wave < vault_count % waves else 0)
            for o in self._wave(n, v):
                paths[o["path"]] += 1
        return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", default="http://127.0.0.1:8545")
    parser.add_argument("--deployment", required=True, help="JSON written by deploy.py")
    parser.add_argument("--artifacts", default=ARTIFACTS_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--vault-ops", type=int, default=30)
    parser.add_argument("--actors", type=int, default=20)
    parser.add_argument("--wave", type=int, default=WAVE_ORDERS_DEFAULT,
                        help="orders per wave (each wave is five blocks)")
    parser.add_argument("--finalize", type=int, default=0, help="mine this many empty blocks at the end")
    parser.add_argument("--report", help="write the counts as JSON to this file")
    args = parser.parse_args()
    if args.actors < 2:
        parser.error("--actors must be at least 2")

    with open(args.deployment) as f:
        deployment = json.load(f)
    rpc = Rpc(args.rpc)
    workload = Workload(rpc, deployment, args.artifacts, args.seed, args.actors)
    first_block = int(rpc.call("eth_blockNumber"), 16) + 1
    started = time.monotonic()
    try:
        workload.setup()
        paths = workload.run(args.orders, args.vault_ops, args.wave)
    finally:
        rpc.call("evm_setAutomine", True)
    elapsed = time.monotonic() - started
    last_workload_block = int(rpc.call("eth_blockNumber"), 16)
    if args.finalize:
        rpc.call("anvil_mine", hex(args.finalize))
    events = sum(workload.events.values())
    report = {
        "seed": args.seed,
        "orders": args.orders,
        "paths": paths,
        "vaultOps": args.vault_ops,
        "transactions": workload.transactions,
        "blocks": workload.blocks,
        "firstBlock": first_block,
        "lastWorkloadBlock": last_workload_block,
        "lastBlock": int(rpc.call("eth_blockNumber"), 16),
        "events": events,
        "eventsByKind": dict(sorted(workload.events.items())),
        "seconds": round(elapsed, 2),
        "eventsPerSecond": round(events / elapsed, 1) if elapsed > 0 else None,
        "transactionsPerSecond": round(workload.transactions / elapsed, 1) if elapsed > 0 else None,
    }
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
