"""Fidelity of the bitcoind double (btc_double.py) to a real Bitcoin Core, judged against the
real captures in tests/fixtures/bitcoind/ (a copy of ../shared/fixtures/bitcoind/): the suite replays the captured RPC session
(node info, every error case, 401, batch, JSON-RPC 1.0, notification, a wallet with no
funds, mining, the anchor flow, a reorg, pruning, a wallet send) and checks that each answer
has the captured HTTP status, result type and key set (and the values that do not depend on
hashes or time), the same error codes and messages, and that the ZMQ messages it causes
match zmq.jsonl message for message (topic, frames, body length, labels, per-topic sequence
numbers, order). Then a few answers bitcoind's sources define but the captures do not hold.

It runs against the double in CI, and against a real node when BITCOIND names a bitcoind
binary (the double-only hook test is then skipped)."""

import copy
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from btc_node import BtcNode, RpcError, _double_python, DOUBLE  # noqa: E402
from harness import TestFailure, check, double_only, free_port, main, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The repository's copy of ../shared/fixtures/bitcoind/ (CI clones the repository alone).
FIXTURES = os.environ.get("BITACORA_BTC_FIXTURES") or os.path.join(REPO, "tests", "fixtures", "bitcoind")
TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")

# Values compared exactly (the rest only by type): they depend on neither hashes nor clocks.
VALUE_KEYS = {"chain", "blocks", "headers", "height", "confirmations", "nTx", "size", "strippedsize", "vsize",
              "weight", "version", "versionHex", "bits", "target", "difficulty", "chainwork", "fee", "base",
              "modified", "ancestor", "descendant", "chunk", "complete", "pruned", "pruneheight", "automatic_pruning",
              "status", "branchlen", "trusted", "untrusted_pending", "immature", "nonmempool", "descendantcount",
              "ancestorcount", "descendantsize", "ancestorsize", "vsize_adjusted", "vsize_bip141", "chunkweight",
              "in_active_chain", "initialblockdownload", "category", "abandoned", "blockheight", "blockindex", "type",
              "sequence", "locktime", "walletname", "format", "walletversion", "txcount", "keypoolsize",
              "keypoolsize_hd_internal", "name", "unbroadcast", "hwm", "amount", "value", "size_on_disk",
              "connections", "relayfee", "incrementalfee", "private_keys_enabled",
              "descriptors", "blank", "avoid_reuse", "scanning", "external_signer", "flags", "warnings"}
# Records whose scalar result is itself a deterministic value.
SCALAR_VALUE_METHODS = {"getblockcount", "pruneblockchain", "stop", "createwallet"}


# --- fixtures and a small independent block parser ------------------------------------------

def load_rpc_records():
    with open(os.path.join(FIXTURES, "rpc.jsonl")) as f:
        return [json.loads(line) for line in f]


def load_zmq_records():
    with open(os.path.join(FIXTURES, "zmq.jsonl")) as f:
        return [json.loads(line) for line in f]


def dsha(data):
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


class Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        check(self.pos + n <= len(self.data), "block ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self):
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        return int.from_bytes(self.take({0xFD: 2, 0xFE: 4, 0xFF: 8}[first]), "little")


def parse_block_hex(text):
    """(block hash, header fields, [(txid, wtxid)]) of a serialized block; checks the Merkle root."""
    data = bytes.fromhex(text)
    c = Cursor(data)
    header = c.take(80)
    txs = []
    for _ in range(c.varint()):
        start = c.pos
        version = c.take(4)
        segwit = c.data[c.pos:c.pos + 2] == b"\x00\x01"
        if segwit:
            c.take(2)
        body_start = c.pos
        n_in = c.varint()
        for _ in range(n_in):
            c.take(36)
            c.take(c.varint())
            c.take(4)
        for _ in range(c.varint()):
            c.take(8)
            c.take(c.varint())
        body_end = c.pos
        if segwit:
            for _ in range(n_in):
                for _ in range(c.varint()):
                    c.take(c.varint())
        locktime = c.take(4)
        stripped = version + c.data[body_start:body_end] + locktime
        txs.append((dsha(stripped)[::-1].hex(), dsha(c.data[start:c.pos])[::-1].hex()))
    check(c.pos == len(data), "trailing bytes after the last transaction")
    level = [bytes.fromhex(t)[::-1] for t, _ in txs]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [dsha(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    check(level[0] == header[36:68], "the Merkle root of the transactions is the header's")
    fields = {"version": struct.unpack("<i", header[:4])[0], "prev": header[4:36][::-1].hex(),
              "merkleroot": header[36:68][::-1].hex(), "time": struct.unpack("<I", header[68:72])[0],
              "bits": f"{struct.unpack('<I', header[72:76])[0]:08x}", "nonce": struct.unpack("<I", header[76:80])[0]}
    block_hash = dsha(header)[::-1]
    check(int.from_bytes(block_hash, "big") <= (0x7FFFFF << (8 * (0x20 - 3))), "the header meets its target")
    return block_hash.hex(), fields, txs


# --- ZMQ -------------------------------------------------------------------------------------

class ZmqCollector:
    """Subscribes to every topic and keeps [(topic, [frames])] (bounded)."""

    def __init__(self, endpoint, limit=200_000):
        import zmq
        self.zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        for topic in TOPICS:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sock.connect(endpoint)
        self.messages = []
        self.limit = limit
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        while self.running:
            if poller.poll(100):
                frames = self.sock.recv_multipart()
                with self.lock:
                    if len(self.messages) < self.limit:
                        self.messages.append((frames[0].decode(errors="replace"), frames))

    def count(self):
        with self.lock:
            return len(self.messages)

    def settle(self, quiet_s=0.7, timeout_s=30):
        """Waits until no message arrived for quiet_s; returns the messages."""
        deadline = time.monotonic() + timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = self.count()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close(0)
        self.ctx.term()


def describe(topic, frames):
    """What zmq.jsonl records of a message, minus the hashes."""
    body = frames[1] if len(frames) > 1 else b""
    seq = struct.unpack("<I", frames[2])[0] if len(frames) > 2 and len(frames[2]) == 4 else None
    label = chr(body[32]) if topic == "sequence" and len(body) >= 33 else None
    mempool_seq = struct.unpack("<Q", body[33:41])[0] if topic == "sequence" and len(body) == 41 else None
    return {"topic": topic, "frames": len(frames), "len": len(body), "seq": seq, "label": label,
            "mempool_seq": mempool_seq}


def describe_record(r):
    body = bytes.fromhex(r["body_hex"])
    label = r.get("sequence_label")
    mempool_seq = struct.unpack("<Q", body[33:41])[0] if r["topic"] == "sequence" and len(body) == 41 else None
    return {"topic": r["topic"], "frames": r["frames"], "len": len(body), "seq": r["seq"], "label": label,
            "mempool_seq": mempool_seq}


def check_zmq_consistency(messages):
    """Frames, per-topic consecutive sequence numbers, and bodies that agree with each other."""
    last = {}
    for i, (topic, frames) in enumerate(messages):
        check(len(frames) == 3 and len(frames[2]) == 4, f"message {i} ({topic}) has bitcoind's three frames")
        seq = struct.unpack("<I", frames[2])[0]
        if topic in last:
            check(seq == last[topic] + 1, f"message {i}: {topic} sequence {seq} follows {last[topic]}")
        last[topic] = seq
        body = frames[1]
        if topic in ("hashblock", "hashtx"):
            check(len(body) == 32, f"message {i}: {topic} is a 32-byte hash")
        if topic == "sequence":
            check((len(body) == 33 and chr(body[32]) in "CD") or (len(body) == 41 and chr(body[32]) in "AR"),
                  f"message {i}: sequence body {body.hex()}")
    for i in range(1, len(messages)):
        (t0, f0), (t1, f1) = messages[i - 1], messages[i]
        if t0 == "hashblock" and t1 == "rawblock":
            check(dsha(f1[1][:80])[::-1] == f0[1], f"message {i}: rawblock is the block hashblock named")
        if t0 == "hashtx" and t1 == "rawtx":
            txid = parse_tx_id(f1[1])
            check(txid == f0[1], f"message {i}: rawtx is the transaction hashtx named")


def parse_tx_id(raw):
    """txid (display order) of one serialized transaction."""
    c = Cursor(raw)
    version = c.take(4)
    segwit = raw[4:6] == b"\x00\x01"
    if segwit:
        c.take(2)
    start = c.pos
    n_in = c.varint()
    for _ in range(n_in):
        c.take(36)
        c.take(c.varint())
        c.take(4)
    for _ in range(c.varint()):
        c.take(8)
        c.take(c.varint())
    end = c.pos
    return dsha(version + raw[start:end] + raw[-4:])[::-1]


# --- answer shapes ---------------------------------------------------------------------------

def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def canonical(v):
    """Lists whose order bitcoind randomizes (outputs, by the change position) in a stable order."""
    if isinstance(v, dict):
        return {k: canonical(x) for k, x in v.items()}
    if isinstance(v, list):
        items = [canonical(x) for x in v]
        if items and all(isinstance(x, dict) and "scriptPubKey" in x and "n" in x for x in items):
            items.sort(key=lambda x: (x["scriptPubKey"].get("type", ""), x.get("value", 0)))
        elif items and all(isinstance(x, dict) and "category" in x for x in items):
            items.sort(key=lambda x: (x["category"], x.get("amount", 0)))
        return items
    return v


def compare_shape(captured, ours, where, problems, key=None):
    if kind(captured) != kind(ours):
        problems.append(f"{where}: {kind(ours)} where bitcoind has {kind(captured)} ({captured!r:.80})")
        return
    if isinstance(captured, dict):
        if set(captured) != set(ours):
            problems.append(f"{where}: keys {sorted(set(ours) - set(captured))} extra, "
                            f"{sorted(set(captured) - set(ours))} missing")
        for k in captured:
            if k in ours:
                compare_shape(captured[k], ours[k], f"{where}.{k}", problems, k)
    elif isinstance(captured, list):
        if len(captured) != len(ours):
            problems.append(f"{where}: {len(ours)} items where bitcoind has {len(captured)}")
        for i, (c, o) in enumerate(zip(captured, ours)):
            compare_shape(c, o, f"{where}[{i}]", problems, key)
    elif key in VALUE_KEYS and captured != ours:
        if not (isinstance(captured, float) and isinstance(ours, float) and abs(captured - ours) < 1e-12):
            problems.append(f"{where}: {ours!r} where bitcoind has {captured!r}")


def learn(captured, ours, subst):
    """Maps the capture's hashes, addresses and hex strings to this run's, by position."""
    if isinstance(captured, dict) and isinstance(ours, dict):
        for k in captured:
            if k in ours:
                learn(captured[k], ours[k], subst)
    elif isinstance(captured, list) and isinstance(ours, list):
        for c, o in zip(captured, ours):
            learn(c, o, subst)
    elif isinstance(captured, str) and isinstance(ours, str) and captured != ours and len(captured) >= 20:
        subst.setdefault(captured, ours)


def substitute(value, subst):
    if isinstance(value, dict):
        return {k: substitute(v, subst) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, subst) for v in value]
    if isinstance(value, str):
        return subst.get(value, value)
    return value


# --- the replay --------------------------------------------------------------------------------

class Replay:
    def __init__(self, node):
        self.node = node
        self.subst = {}
        self.problems = []
        self.answers = {}

    def run(self, index, record):
        request = substitute(copy.deepcopy(record["request"]), self.subst)
        path = substitute(record["path"], self.subst)
        auth = record["http_status"] != 401
        status, headers, body = self.node.http(request, path, auth=auth, timeout=300)
        where = f"rpc.jsonl #{index} ({record['phase']}: {record['note'] or self.method(record)})"
        problems = []
        if status != record["http_status"]:
            problems.append(f"{where}: HTTP {status} where bitcoind answered {record['http_status']}")
        if record["response"] is None:
            if body.strip() != record["response_text"].encode().strip():
                problems.append(f"{where}: body {body[:100]!r} where bitcoind sent {record['response_text']!r}")
            if status == 401 and headers.get("www-authenticate") != 'Basic realm="jsonrpc"':
                problems.append(f"{where}: WWW-Authenticate {headers.get('www-authenticate')!r}")
            self.problems += problems
            return None
        try:
            ours = json.loads(body)
        except ValueError:
            self.problems.append(f"{where}: not JSON: {body[:200]!r}")
            return None
        captured = record["response"]
        self.compare_reply(captured, ours, where, problems, record)
        self.problems += problems
        learn(canonical(captured), canonical(ours), self.subst)
        self.answers[index] = ours
        return ours

    @staticmethod
    def method(record):
        r = record["request"]
        return r.get("method") if isinstance(r, dict) else "batch"

    def compare_reply(self, captured, ours, where, problems, record):
        if isinstance(captured, list):
            if not isinstance(ours, list) or len(ours) != len(captured):
                problems.append(f"{where}: batch answer {ours!r:.200}")
                return
            for i, (c, o) in enumerate(zip(captured, ours)):
                self.compare_reply(c, o, f"{where}[{i}]", problems, {"request": record["request"][i]})
            return
        if list(captured) != list(ours):
            problems.append(f"{where}: reply members {list(ours)} where bitcoind has {list(captured)}")
        if captured.get("error") is not None:
            err = ours.get("error") or {}
            if err.get("code") != captured["error"]["code"] or err.get("message") != substitute(
                    captured["error"]["message"], self.subst):
                problems.append(f"{where}: error {err} where bitcoind answered {captured['error']}")
            return
        if ours.get("error") is not None:
            problems.append(f"{where}: error {ours['error']} where bitcoind answered {captured.get('result')!r:.200}")
            return
        result_c, result_o = canonical(captured.get("result")), canonical(ours.get("result"))
        compare_shape(result_c, result_o, where, problems)
        method = self.method(record)
        if method in SCALAR_VALUE_METHODS and not isinstance(result_c, (dict, list)) and result_c != result_o:
            problems.append(f"{where}: {result_o!r} where bitcoind answered {result_c!r}")
        if "id" in captured and ours.get("id") != captured["id"]:
            problems.append(f"{where}: id {ours.get('id')!r} where bitcoind echoed {captured['id']!r}")


def expect_error(node, method, params, code, message, wallet=None, prefix=False):
    try:
        result = node.rpc(method, *params, wallet=wallet)
    except RpcError as e:
        ok = e.code == code and (e.message.startswith(message) if prefix else e.message == message)
        check(ok, f"{method}{params}: error {e.code} {e.message!r}, expected {code} {message!r}")
        return e
    raise TestFailure(f"{method}{params} answered {result!r:.200}, expected error {code} {message!r}")


def extra_checks(node, replay, zmq):
    """What httprpc.cpp and the wallet define but the captures do not show."""
    # Legacy (JSON-RPC 1.0 or no "jsonrpc") errors carry HTTP statuses.
    status, _, body = node.http({"jsonrpc": "1.0", "id": "x", "method": "nosuchmethod", "params": []})
    expected = {"result": None, "error": {"code": -32601, "message": "Method not found"}, "id": "x"}
    check(status == 404 and json.loads(body) == expected, f"legacy unknown method: {status} {body!r}")
    status, _, body = node.http({"id": 7, "method": "getblockhash", "params": [99999]})
    expected = {"result": None, "error": {"code": -8, "message": "Block height out of range"}, "id": 7}
    check(status == 500 and json.loads(body) == expected, f"legacy error: {status} {body!r}")
    status, _, body = node.http({"id": 8, "method": "getblockcount"})
    check(status == 200 and set(json.loads(body)) == {"result", "error", "id"}, f"no jsonrpc member: {body!r}")
    status, _, body = node.http("{not json")
    check(status == 500 and json.loads(body) == {"result": None, "error": {"code": -32700, "message": "Parse error"},
                                                  "id": None}, f"parse error: {status} {body!r}")
    status, _, body = node.http({"jsonrpc": "2.0", "id": 3, "params": []})
    check(status == 400 and json.loads(body)["error"] == {"code": -32600, "message": "Missing method"},
          f"missing method: {status} {body!r}")
    status, _, body = node.http([{"jsonrpc": "2.0", "method": "getblockcount"}])
    check(status == 204 and body == b"", f"a batch of notifications: {status} {body!r}")
    status, _, body = node.http([])
    check(status == 200 and json.loads(body) == [], f"an empty batch: {status} {body!r}")
    status, _, body = node.http(b"", method="GET")
    check(status == 405, f"GET: {status}")
    t0 = time.monotonic()
    status, headers, body = node.http({"jsonrpc": "2.0", "id": 1, "method": "getblockcount"}, auth="__cookie__:wrong")
    check(status == 401 and body == b"" and headers.get("www-authenticate") == 'Basic realm="jsonrpc"',
          f"wrong password: {status}")
    check(time.monotonic() - t0 >= 0.2, "a wrong password is answered after bitcoind's 250 ms delay")
    # Parameters.
    expect_error(node, "getblock", ["z" * 64], -8, f"blockhash must be hexadecimal string (not '{'z' * 64}')")
    expect_error(node, "getblockcount", [1], -1, "getblockcount", prefix=True)
    expect_error(node, "getblockheader", [1], -3, "Wrong type passed:\n{\n    \"Position 1 (blockhash)\": \"JSON value "
                                                  "of type number is not of expected type string\"\n}")
    # Wallet endpoints.
    expect_error(node, "getbalances", [], -18, "Requested wallet does not exist or is not loaded",
                 wallet="nosuchwallet")
    node.rpc("createwallet", "other")
    expect_error(node, "getbalances", [], -19, "Multiple wallets are loaded. Please select which wallet to use by "
                                               "requesting the RPC through the /wallet/<walletname> URI path.")
    check(sorted(node.rpc("listwallets")) == ["anchor", "other"], "two wallets listed")
    node.rpc("unloadwallet", "other")
    check(node.rpc("listwallets") == ["anchor"], "unloaded")
    estimate = node.rpc("estimatesmartfee", 6)
    check(estimate == {"errors": ["Insufficient data or no feerate found"], "blocks": 6},
          f"estimatesmartfee: {estimate}")

    # Transactions: confirmed, spent, already in the UTXO set.
    anchor_txid = replay.answers[34]["result"]
    sent_txid = replay.answers[72]["result"]
    expect_error(node, "getrawtransaction", [sent_txid], -5, "No such mempool transaction. Use -txindex or provide a "
                 "block hash to enable blockchain transaction queries. Use gettransaction for wallet transactions.")
    sent_hex = node.rpc("gettransaction", sent_txid, wallet="anchor")["hex"]
    expect_error(node, "sendrawtransaction", [sent_hex], -27, "Transaction outputs already in utxo set")
    anchor_hex = node.rpc("gettransaction", anchor_txid, wallet="anchor")["hex"]
    expect_error(node, "sendrawtransaction", [anchor_hex], -25, "bad-txns-inputs-missingorspent")
    expect_error(node, "sendrawtransaction", ["00"], -22, "TX decode failed. Make sure the tx has at least one input.")

    # A fee bump (BIP125): the replacement evicts the original, ZMQ says R then A.
    raw = node.rpc("createrawtransaction", [], [{"data": "4254435201" + "00" * 40}])
    funded = node.rpc("fundrawtransaction", raw, {"fee_rate": 2}, wallet="anchor")
    signed = node.rpc("signrawtransactionwithwallet", funded["hex"], wallet="anchor")
    check(signed["complete"] is True, "signed")
    first = node.rpc("sendrawtransaction", signed["hex"])
    before = zmq.settle(quiet_s=0.5)
    bumped = node.rpc("bumpfee", first, wallet="anchor")
    check(set(bumped) == {"txid", "origfee", "fee", "errors"} and bumped["errors"] == []
          and bumped["fee"] > bumped["origfee"], f"bumpfee: {bumped}")
    height = node.rpc("getblockcount")
    check(node.rpc("decoderawtransaction", node.rpc("getrawtransaction", bumped["txid"]))["locktime"] in
          range(height - 100, height + 1), "the bump is a new wallet transaction: anti-fee-sniping locktime")
    mempool = node.rpc("getrawmempool")
    check(bumped["txid"] in mempool and first not in mempool, "the replacement evicted the original")
    after = zmq.settle(quiet_s=0.5)
    new = [describe(t, f) for t, f in after[len(before):]]
    pattern = [(m["topic"], m["label"]) for m in new]
    check(pattern == [("sequence", "R"), ("hashtx", None), ("rawtx", None), ("sequence", "A")],
          f"ZMQ for a replacement: {pattern}")
    check(new[3]["mempool_seq"] == new[0]["mempool_seq"] + 1, "mempool sequence numbers follow each other")
    original = node.rpc("gettransaction", first, wallet="anchor")
    check(original.get("replaced_by_txid") == bumped["txid"] and bumped["txid"] in original["walletconflicts"],
          f"the original knows its replacement: {original}")
    expect_error(node, "sendrawtransaction", [signed["hex"]], -26, "insufficient fee", prefix=True)
    block = node.mine(1)[0]
    original = node.rpc("gettransaction", first, wallet="anchor")
    check(original["confirmations"] == -1, f"the replaced transaction is conflicted: {original['confirmations']}")
    check(node.rpc("gettransaction", bumped["txid"], wallet="anchor")["blockhash"] == block, "the bump confirmed")
    bump_hex = node.rpc("gettransaction", bumped["txid"], wallet="anchor")["hex"]
    spent = node.rpc("decoderawtransaction", bump_hex)["vin"][0]
    expect_error(node, "bumpfee", [bumped["txid"]], -1, f"{spent['txid']}:{spent['vout']} is already spent",
                 wallet="anchor")
    expect_error(node, "bumpfee", [first], -1, f"{spent['txid']}:{spent['vout']} is already spent", wallet="anchor")

    # Details a real v31.99 showed: mempool transactions carry vsize_adjusted, createrawtransaction
    # signals RBF by default, a dust amount is "too small", an unsigned P2WPKH input fails script
    # checks with its position, and generateblock's coinbase claims no fees.
    address = node.rpc("getnewaddress", wallet="anchor")
    child = node.rpc("sendtoaddress", address, 1, wallet="anchor")
    check(list(node.rpc("getrawtransaction", child, 1))[0] == "vsize_adjusted", "getrawtransaction of a mempool tx")
    coin = next(u for u in node.rpc("listunspent", wallet="anchor")
                if u["txid"] != child and u["scriptPubKey"].startswith("0014"))
    raw = node.rpc("createrawtransaction", [{"txid": coin["txid"], "vout": coin["vout"]}], [{address: 0.5}])
    unsigned = node.rpc("decoderawtransaction", raw)
    check(unsigned["vin"][0]["sequence"] == 0xFFFFFFFD, "createrawtransaction: replaceable by default")
    expect_error(node, "sendtoaddress", [address, 0], -6, "Transaction amount too small", wallet="anchor")
    expect_error(node, "sendrawtransaction", [raw], -26, "mempool-script-verify-flag-failed (Witness program hash "
                 f"mismatch), input 0 of {unsigned['txid']} (wtxid {unsigned['hash']}), spending "
                 f"{coin['txid']}:{coin['vout']}")
    signed_child = node.rpc("signrawtransactionwithwallet", raw, wallet="anchor")["hex"]
    generated = node.rpc("generateblock", address, [signed_child])["hash"]
    coinbase = node.rpc("getblock", generated, 2)["tx"][0]
    subsidy = 50 / 2 ** (node.rpc("getblockcount") // 150)
    check(abs(coinbase["vout"][0]["value"] - subsidy) < 1e-9, f"generateblock claims no fees: {coinbase['vout']}")

    # getblock verbosity 0 parses, its Merkle root is the header's, its txids getblock's (the
    # anchor's own block is pruned by now: the block holding the bump).
    block_hash, fields, txs = parse_block_hex(node.rpc("getblock", block, 0))
    verbose = node.rpc("getblock", block, 1)
    check(block_hash == block and fields["merkleroot"] == verbose["merkleroot"], "header fields")
    check([t for t, _ in txs] == verbose["tx"] and bumped["txid"] in verbose["tx"], "txids of the raw block")
    check(fields["bits"] == "207fffff" and fields["version"] == 0x20000000, f"header: {fields}")
    expect_error(node, "getblock", [replay.answers[60]["result"][0], 0], -1, "Block not available (pruned data)")
    proof = node.rpc("gettxoutproof", [bumped["txid"]], block)
    check(node.rpc("verifytxoutproof", proof) == [bumped["txid"]], "a proof of the bump verifies")


# --- tests ---------------------------------------------------------------------------------------

def test_fixture_block_parses(options, tmp):
    with open(os.path.join(FIXTURES, "blocks", "anchor_block.hex")) as f:
        block_hash, fields, txs = parse_block_hex(f.read().strip())
    with open(os.path.join(FIXTURES, "blocks", "anchor_block.verbose2.json")) as f:
        verbose = json.load(f)
    check(block_hash == verbose["hash"], "the header hashes to the captured block hash")
    check(fields["merkleroot"] == verbose["merkleroot"] and fields["nonce"] == verbose["nonce"]
          and fields["time"] == verbose["time"] and fields["bits"] == verbose["bits"], "header fields")
    check([t for t, _ in txs] == [t["txid"] for t in verbose["tx"]], "txids equal the captured ones")
    check([w for _, w in txs] == [t["hash"] for t in verbose["tx"]], "wtxids equal the captured ones")


def test_fidelity_replay_and_zmq(options, tmp):
    records = load_rpc_records()
    captured_zmq = load_zmq_records()
    with BtcNode().start(os.path.join(tmp, "node")) as node:
        print(f"  against {'the real bitcoind ' + node.binary if node.is_real else 'the double'}", flush=True)
        zmq = ZmqCollector(node.zmq_endpoint)
        try:
            time.sleep(0.5)   # let the subscription reach the publisher
            replay = Replay(node)
            started = time.monotonic()
            for index, record in enumerate(records[:-1]):
                replay.run(index, record)
            ours = zmq.settle()
            capture_count = len(ours)
            extra_checks(node, replay, zmq)
            last = replay.run(len(records) - 1, records[-1])   # stop
            check(last is not None and last.get("result") == "Bitcoin Core stopping", f"stop: {last}")
            node.proc.wait(timeout=30)
            check(node.proc.returncode == 0, f"clean exit after stop: {node.proc.returncode}")
            check(not os.path.exists(node.cookie_path), "the cookie is deleted on stop")
            print(f"  replayed {len(records)} calls in {time.monotonic() - started:.1f} s", flush=True)
        finally:
            zmq.close()
    if replay.problems:
        raise TestFailure(f"{len(replay.problems)} differences from bitcoind:\n  " + "\n  ".join(replay.problems[:60]))
    # ZMQ: ours (minus the genesis messages a subscriber may or may not catch) against zmq.jsonl.
    ours = ours[:capture_count]
    while ours and ours[0][0] in ("hashtx", "rawtx", "sequence") and struct.unpack("<I", ours[0][1][2])[0] == 0:
        ours.pop(0)
    check_zmq_consistency(ours)
    mine = [describe(t, f) for t, f in ours]
    theirs = [describe_record(r) for r in captured_zmq]
    check(len(mine) == len(theirs), f"{len(mine)} ZMQ messages where bitcoind published {len(theirs)}")
    for i, (m, t) in enumerate(zip(mine, theirs)):
        check(m == t, f"ZMQ message {i} ({captured_zmq[i]['phase']}): {m} where bitcoind published {t}")
    # Bodies: hashblock and sequence name the blocks generatetoaddress returned, in order.
    blocks = [h for i in (28, 38, 53, 60, 64, 73) for h in replay.answers[i]["result"]]
    announced = [f[1].hex() for t, f in ours if t == "hashblock"]
    check(announced == blocks, "hashblock announces every generated block, in order")
    connected = [f[1][:32].hex() for t, f in ours if t == "sequence" and f[1][32:33] == b"C"]
    check(connected == blocks, "sequence C names every connected block, in display order")


@double_only
def test_double_hooks_cookie_and_signals(options, tmp):
    with BtcNode().start(os.path.join(tmp, "node")) as node:
        mode = stat.S_IMODE(os.stat(node.cookie_path).st_mode)
        check(mode == 0o600, f"cookie mode {oct(mode)}")
        with open(node.cookie_path) as f:
            cookie = f.read()
        check(cookie.startswith("__cookie__:") and len(cookie) == 11 + 64, f"cookie {cookie!r}")
        with open(os.path.join(node.datadir, "regtest", "double.json")) as f:
            info = json.load(f)
        check(info["rpcport"] == node.rpc_port and info["zmq"] == node.zmq_endpoint and info["pid"] == node.pid,
              f"double.json: {info}")
        zmq = ZmqCollector(node.zmq_endpoint)
        try:
            time.sleep(0.5)
            node.mine(1)
            base = len(zmq.settle(quiet_s=0.3))
            node.rpc("double_zmqdrop", 3)
            node.mine(2)
            msgs = zmq.settle(quiet_s=0.3)[base:]
            check(len(msgs) == 10 - 3, f"3 of 10 messages dropped: {len(msgs)}")
            seqs = {}
            for t, f in msgs:
                seqs.setdefault(t, []).append(struct.unpack("<I", f[2])[0])
            check(seqs["hashtx"][0] == 3 and seqs["rawtx"][0] == 3, f"a gap shows in the sequence numbers: {seqs}")
            node.rpc("double_zmqpause", True)
            node.mine(1)
            before = zmq.count()
            time.sleep(0.3)
            check(zmq.count() == before, "nothing published while paused")
            node.rpc("double_zmqpause", False)
            time.sleep(0.5)
            node.mine(1)
            msgs = zmq.settle(quiet_s=0.3)[before:]
            check([t for t, _ in msgs] == ["hashtx", "rawtx", "sequence", "hashblock", "rawblock"],
                  f"after resume {msgs}")
            check(struct.unpack("<I", msgs[3][1][2])[0] == 4, "hashblock numbers the paused block too")
        finally:
            zmq.close()
        node.rpc("double_fail", "getblockcount", -28, "Loading block index…", 2)
        for _ in range(2):
            expect_error(node, "getblockcount", [], -28, "Loading block index…")
        check(node.rpc("getblockcount") == 5, "double_fail answers count calls only")
        node.rpc("double_http500", 1)
        status, _, body = node.http({"jsonrpc": "2.0", "id": 1, "method": "getblockcount"})
        check(status == 500 and body == b"", f"double_http500: {status} {body!r}")
        node.rpc("double_stall", 600, 1, "getbestblockhash")
        t0 = time.monotonic()
        node.rpc("getbestblockhash")
        check(time.monotonic() - t0 >= 0.55, "double_stall held the call")
        info = node.rpc("double_info")
        check(info["stall"] is None and info["http500"] == 0 and info["fail"] == {}, f"hooks consumed: {info}")
        check(node.rpc("uptime") >= 0 and node.rpc("getblockcount") == 5, "still serving")
        node.proc.send_signal(15)
        node.proc.wait(timeout=20)
        check(node.proc.returncode == 0 and not os.path.exists(node.cookie_path), "SIGTERM: clean exit, cookie gone")

    # -rpcport=0 and -rpcuser/-rpcpassword.
    datadir = os.path.join(tmp, "port0")
    os.makedirs(datadir)
    zport = free_port()
    proc = subprocess.Popen([_double_python(), DOUBLE, "-regtest", f"-datadir={datadir}", "-rpcport=0",
                             "-rpcbind=127.0.0.1", "-rpcuser=u", "-rpcpassword=p", "-listen=0", "-printtoconsole=0",
                             f"-zmqpubhashblock=tcp://127.0.0.1:{zport}", f"-zmqpubsequence=tcp://127.0.0.1:{zport}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        info_path = os.path.join(datadir, "regtest", "double.json")
        wait_for(lambda: os.path.exists(info_path), 20, "double.json")
        with open(info_path) as f:
            info = json.load(f)
        check(info["rpcport"] > 0 and info["zmq"] == f"tcp://127.0.0.1:{zport}", f"double.json: {info}")
        check(not os.path.exists(os.path.join(datadir, "regtest", ".cookie")), "no cookie with -rpcpassword")
        probe = BtcNode(binary="")
        probe.rpc_port, probe.datadir, probe._auth = info["rpcport"], datadir, "u:p"
        check(probe.rpc("getblockcount") == 0, "user/password auth")
        notes = probe.rpc("getzmqnotifications")
        check([n["type"] for n in notes] == ["pubhashblock", "pubsequence"], f"getzmqnotifications: {notes}")
        probe._auth = "u:wrong"
        try:
            probe.rpc("getblockcount")
            raise TestFailure("a wrong password was accepted")
        except RpcError as e:
            check(e.http_status == 401, f"wrong password: {e}")
        probe._auth = "u:p"
        check(probe.rpc("stop") == "Bitcoin Core stopping", "stop")
        proc.wait(timeout=20)
        check(proc.returncode == 0, "clean exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    if os.environ.get("BITCOIND"):
        print(f"fidelity suite against the real node {os.environ['BITCOIND']}", flush=True)
    else:
        print("BITCOIND is not set: fidelity suite against the regtest double (BITCOIND=/path/to/bitcoind runs it against a real node)", flush=True)
    main([test_fixture_block_parses, test_fidelity_replay_and_zmq, test_double_hooks_cookie_and_signals])
