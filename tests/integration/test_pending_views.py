"""Pending views around reorgs, on a real anvil (issue 13): a reorg onto a shorter chain
is seen within one poll; pending events carry ids that cannot be taken for final
indices; the ZMQ stream announces what it later rolls back, gives off-chain kinds their
own topics and tells a restart from a gap."""

import json
import os
import re
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
        check("EVM reorg: rolled back" in read_log(datadir), "the reorg is logged")

        # Back to a snapshot and nothing mined: the head is a block we hold, with our hash.
        platform.resync_workload()
        base, old_tip, orphans = _orphan_wave(platform, datadir, daemon, api)
        reorgs = _evm(_status(api))["reorgs"]
        started = time.monotonic()
        wait_for(lambda: (lambda evm: evm["pendingTip"] == base and evm["reorgs"] == reorgs + 1)(_evm(_status(api))),
                 30, f"pendingTip {base}, the head we hold, below the old tip {old_tip}")
        seen_s = time.monotonic() - started
        print(f"back to our own block {base} (old tip {old_tip}) seen after {seen_s:.2f} s")
        check(seen_s < POLL_MS / 1000 + 1.0, f"the reorg took {seen_s:.2f} s to be seen, over one poll interval")
        check("EVM node's chain is shorter" in read_log(datadir), "the shorter chain is logged")
        for order_id in orphans:
            check(api.error("escrow_getOrder", order_id) == -32001, f"orphaned order {order_id} is still served")
    finally:
        if daemon:
            daemon.stop()
        platform.stop()


PENDING_ID = re.compile(r"^pending:0x[0-9a-f]{64}:\d+$")


def _history(api, order_ids):
    return {i: api.call("escrow_getOrder", i) for i in order_ids}


def test_pending_events_have_ids_no_final_index_can_be_mistaken_for(options, tmp):
    platform = Platform(options, tmp, seed=33)
    daemon = None
    try:
        platform.waves(1)
        platform.mine(70)
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, platform, datadir)
        wait_synced_at(datadir, platform, daemon=daemon)
        api = Api(datadir)
        before, _ = platform.head()
        orders = platform.workload._wave(6, 2)  # one block per step: created at before + 1
        head, _ = platform.head()
        platform.mine(65 - (head - before))  # the creations final, the later steps pending
        wait_synced_at(datadir, platform, daemon=daemon)
        size = api.call("bitacora_status")["ledger"]["size"]
        ids = [str(o["id"]) for o in orders]
        views = _history(api, ids)
        mixed = 0
        pending_entries = {}
        for order_id, order in views.items():
            finals = [e for e in order["history"] if e["index"] is not None]
            pendings = [e for e in order["history"] if e["index"] is None]
            mixed += bool(finals and pendings)
            for entry in finals:
                check(entry["index"] < size, f"order {order_id}: index {entry['index']} past the log's size {size}")
                check(api.call("ledger_getEvent", entry["index"])["event"]["kind"] == entry["kind"], "a final entry's event")
                check("pendingId" not in entry, "a final entry has no pending id")
            for position, entry in enumerate(order["history"]):
                if entry["index"] is None:
                    check(PENDING_ID.match(entry.get("pendingId", "")), f"pending entry without a pending id: {entry}")
                    pending_entries[(order_id, position)] = entry
        check(mixed > 0, "no order had both final and pending events: the scenario did not happen")
        print(f"{len(pending_entries)} pending history entries, {mixed} orders with final and pending events, log size {size}")
        some = next(iter(pending_entries.values()))["pendingId"]
        check(api.error("ledger_getEvent", some) == -32602, "ledger_getEvent takes final indices only")
        check(api.error("ledger_getEvent", size) == -32001, "an index past the log is not found")

        # Once final, each of those events has an index, and it is the same log.
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        size = api.call("bitacora_status")["ledger"]["size"]
        for (order_id, position), entry in pending_entries.items():
            final_entry = api.call("escrow_getOrder", order_id)["history"][position]
            check(final_entry["index"] is not None and final_entry["index"] < size, f"final entry {final_entry}")
            origin = api.call("ledger_getEvent", final_entry["index"])["event"]["origin"]
            check(f"pending:{origin['blockHash']}:{origin['logIndex']}" == entry["pendingId"],
                  f"the final event at {final_entry['index']} is not the log {entry['pendingId']} named")
    finally:
        if daemon:
            daemon.stop()
        platform.stop()


class Subscriber:
    """A ZMQ SUB socket (Debian's python3-zmq) that keeps every message it receives."""

    def __init__(self, endpoint):
        import zmq
        self.zmq = zmq
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.messages = []  # (topic, body, sequence)

    def drain(self, until, timeout_s=60):
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        while not until(self.messages):
            check(time.monotonic() < deadline, f"timed out with {len(self.messages)} ZMQ messages")
            if poller.poll(200):
                topic, body, seq = self.sock.recv_multipart()
                check(len(seq) == 4, "the sequence number is 4 bytes")
                self.messages.append((topic.decode(), json.loads(body), int.from_bytes(seq, "little")))

    def close(self):
        self.sock.close(linger=0)
        self.context.term()


def _sign(options, tmp, kind, key, payload):
    cli = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
    out = subprocess.run([cli, f"-signkey={os.path.join(tmp, 'backend.key')}", "signoffchain", kind, key,
                          json.dumps(payload)], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f"signoffchain: {out.stderr}")
    return json.loads(out.stdout)


def _restarted_api(datadir):
    """The API of the process that started after the last shutdown in the log."""
    def port():
        ports = re.findall(r"RPC server on port (\d+)", read_log(datadir).split("SIGTERM received")[-1])
        return ports and os.path.exists(os.path.join(datadir, "regtest", ".cookie")) and int(ports[-1])
    number = wait_for(port, 30, "the restarted RPC server")
    api = Api(datadir)
    api.port, api.url = number, f"http://127.0.0.1:{number}/"
    return api


def _finals(messages):
    return [m for t, m, _ in messages if t.startswith("final.")]


def test_zmq_announces_what_it_rolls_back_topics_per_kind_and_an_epoch_per_process(options, tmp):
    platform = Platform(options, tmp, seed=37)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = Subscriber(endpoint)
    daemon = None
    try:
        offer = {"offerId": "o-1", "seller": "0x" + "ab" * 20, "amount": "250000000", "fiatCurrency": "EUR", "price": "92"}
        posted = _sign(options, tmp, "offer.posted", "k-1", offer)
        note = _sign(options, tmp, "dispute.note", "k-2", {"orderId": "1", "author": "0x" + "cd" * 20,
                                                           "noteHash": "0x" + "11" * 32})
        datadir = os.path.join(tmp, "node")
        args = [f"-zmqpubevent={endpoint}", f"-backendkey={posted['submitter']}"]
        daemon = start_follower(options, platform, datadir, extra=args)
        wait_for(lambda: "EVM synced" in read_log(datadir), 60, "the follower")
        api = Api(datadir)
        platform.waves(2)
        head, head_hash = platform.head()
        wait_for(lambda: f"pending tip {head} {head_hash}" in read_log(datadir), 60, "the follower at the head")
        platform.rpc.call("anvil_reorg", 3, [])  # the last 3 blocks' events are taken back
        platform.resync_workload()
        _, old_tip, _ = _orphan_wave(platform, datadir, daemon, api)  # and a shorter chain
        platform.resync_workload()
        platform.mine(2)
        platform.waves(1)
        for params in (posted, note):
            status, answer = api.post({"jsonrpc": "2.0", "id": 1, "method": "ledger_submitEvent", "params": params})
            check(status == 200 and "result" in answer, f"ledger_submitEvent: {answer}")
        platform.mine(70)
        synced = wait_synced_at(datadir, platform, daemon=daemon)
        size = int(synced["size"])
        sub.drain(lambda ms: len(_finals(ms)) >= size)
        messages = list(sub.messages)

        epochs = {m["epoch"] for _, m, _ in messages}
        check(len(epochs) == 1 and len(next(iter(epochs))) == 32, f"one epoch per process: {epochs}")
        # The daemon publishes its first pending blocks at once, maybe before the subscriber
        # has joined: each topic counts on without a gap from its first message here.
        sequences = {}
        for topic, _, seq in messages:
            check(seq == sequences.get(topic, seq), f"topic {topic}: sequence {seq}, expected {sequences.get(topic)}")
            sequences[topic] = seq + 1
        check([m["index"] for m in _finals(messages)] == list(range(size)), "every final event once, in log order")
        # A pending topic seen here from its sequence 0 on was seen whole; any other lost its
        # start to the slow joiner (its first message had sequence > 0, or all of its
        # messages came before the join: a kind announced pending once, early, then rolled
        # back). Only the latter may roll back an id not announced here.
        seen_whole = {t for t, _, s in messages if t.startswith("pending.") and s == 0}
        announced = set()
        rolled_back = 0
        unseen_rollbacks = 0
        for topic, body, _ in messages:
            kind = topic.split(".", 1)[1]
            if topic.startswith("pending."):
                check(body["status"] == "pending" and body["index"] is None and PENDING_ID.match(body["pendingId"]),
                      f"a pending announcement: {body}")
                check(kind == body["event"]["kind"], f"topic {topic} for a {body['event']['kind']}")
                announced.add(body["pendingId"])
            elif topic.startswith("rollback."):
                rolled_back += 1
                check(body["status"] == "rolledBack" and body["index"] is None, f"a rollback: {body}")
                if body["pendingId"] not in announced:
                    check("pending." + kind not in seen_whole, f"rollback of {body['pendingId']}, never announced pending")
                    unseen_rollbacks += 1
                announced.discard(body["pendingId"])
            else:
                check(topic.startswith("final."), f"unknown topic {topic}")
                if body["event"]["kind"] == "offchain":
                    check(kind == "offchain." + body["event"]["fields"]["offchainKind"], f"off-chain topic {topic}")
                else:
                    check(kind == body["event"]["kind"], f"topic {topic} for a {body['event']['kind']}")
                    announced.discard(body.get("pendingId"))
        topics = {t for t, _, _ in messages}
        check({"final.offchain.offer.posted", "final.offchain.dispute.note"} <= topics, f"off-chain topics: {sorted(topics)}")
        check(rolled_back > 0, "the reorgs rolled nothing back")
        check(rolled_back > unseen_rollbacks, "no rollback was announced pending here first")
        check(not announced, f"{len(announced)} pending events neither rolled back nor final")
        print(f"{len(messages)} messages: {rolled_back} rollbacks, {rolled_back - unseen_rollbacks} of them announced "
              f"here first ({unseen_rollbacks} announced before the subscriber joined); {len(topics)} topics")

        # A restart: the sequence numbers start again at 0, under a new epoch.
        daemon.stop()
        restarted_at = len(sub.messages)
        daemon = start_follower(options, platform, datadir, extra=args)
        api = _restarted_api(datadir)
        wait_for(lambda: "EVM synced" in read_log(datadir).split("SIGTERM received")[-1], 60, "the restarted follower")
        # The subscriber reconnects on its own, after a while (a second or so): what is
        # published before that is lost, as a slow subscriber's messages are. Submit until
        # one arrives; its sequence number counts from 0 in the new process.
        submitted = 0
        while not any(t == "final.offchain.offer.posted" for t, _, _ in sub.messages[restarted_at:]):
            check(submitted < 40, "no message from the restarted daemon")
            again = _sign(options, tmp, "offer.posted", f"k-restart-{submitted}", dict(offer, offerId=f"o-{submitted}"))
            status, answer = api.post({"jsonrpc": "2.0", "id": 1, "method": "ledger_submitEvent", "params": again})
            check(status == 200 and answer["result"]["index"] == size + submitted, f"ledger_submitEvent: {answer}")
            submitted += 1
            try:
                sub.drain(lambda ms: any(t == "final.offchain.offer.posted" for t, _, _ in ms[restarted_at:]), 0.5)
            except AssertionError:
                pass
        topic, body, seq = next(x for x in sub.messages[restarted_at:] if x[0] == "final.offchain.offer.posted")
        check(sequences["final.offchain.offer.posted"] == 1, "one offer.posted before the restart")
        check(seq == body["index"] - size, f"sequence {seq} for the restarted daemon's event {body['index'] - size}")
        check(body["epoch"] not in epochs, "a restart is told from a gap by a new epoch")
        # bitacora_status names the same epoch, so a subscriber can ask which stream it is on.
        stream = api.call("bitacora_status")["sources"]["zmq"]
        check(stream["epoch"] == body["epoch"] and stream["published"] >= 1 and stream["dropped"] == 0,
              f"bitacora_status's zmq: {stream}")
        print(f"after the restart: sequence {seq} under a new epoch ({submitted} submitted before one arrived)")
        # Resuming: the API from the last final index seen gives what was missed and what came.
        resumed = api.call("ledger_getEvents", size, 10)
        events = resumed["events"] if isinstance(resumed, dict) else resumed
        check(len(events) == submitted and events[0]["index"] == size, "resume by ledger_getEvents from the last index seen")
        check(events[seq]["leaf"] == body["leaf"], "the message is the event the API has at its index")
    finally:
        if daemon:
            daemon.stop()
        sub.close()
        platform.stop()


if __name__ == "__main__":
    main([test_a_reorg_onto_a_shorter_chain_is_seen_within_one_poll,
          test_pending_events_have_ids_no_final_index_can_be_mistaken_for,
          test_zmq_announces_what_it_rolls_back_topics_per_kind_and_an_epoch_per_process])
