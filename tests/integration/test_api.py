"""The JSON-RPC API over real HTTP, on a daemon following a real anvil: every read method
against the contracts' own answers, proofs checked with an independent RFC 9162
verifier, every error code, authentication, limits, /health and /metrics, and the exact
request bitcoin-cli sends plus `cast rpc` as real clients."""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import Platform, read_log, start_follower, wait_synced_at  # noqa: E402
from harness import check, main, wait_for  # noqa: E402

# A copy of ../shared/fixtures/bitcoind/bitcoin-cli-request.json: CI clones this repository alone.
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SALT = "5f1d"


def rpcauth(user, password):
    return f"{user}:{SALT}${hmac.new(SALT.encode(), password.encode(), 'sha256').hexdigest()}"


class Api:
    def __init__(self, datadir):
        log = wait_for(lambda: re.search(r"RPC server on port (\d+)", read_log(datadir)), 30, "the RPC server")
        self.port = int(log.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"
        with open(os.path.join(datadir, "regtest", ".cookie")) as f:
            self.cookie = f.read().strip()

    def post(self, body, credentials="cookie", path="/", method="POST"):
        """Returns (HTTP status, parsed body or None)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data if method == "POST" else None,
                                         method=method, headers={"Content-Type": "application/json"})
        if credentials:
            secret = self.cookie if credentials == "cookie" else credentials
            request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read()
                return answer.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text) if text else None
            except ValueError:
                return e.code, None

    def call(self, method, *params, credentials="cookie"):
        status, answer = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, credentials)
        check(status == 200, f"{method}: HTTP {status}")
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def error(self, method, *params):
        status, answer = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        check(status == 200 and "error" in answer, f"{method} should fail: {status} {answer}")
        return answer["error"]["code"]


def _h(data):
    return hashlib.sha256(data).digest()


def unhex(text):
    """The API's hex: 0x-prefixed, always (issue 13)."""
    check(isinstance(text, str) and text.startswith("0x"), f"hex without 0x: {text!r}")
    return bytes.fromhex(text[2:])


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 section 2.1.3.2, written from the RFC."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, _h(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, path):
    """RFC 9162 section 2.1.4.2."""
    if first == second:
        return not path and first_root == second_root
    if first == 0 or first > second:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    if not path:
        return False
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def _started(options, tmp, extra=(), waves=3):
    platform = Platform(options, tmp, seed=21)
    platform.waves(waves)
    platform.mine(70)
    datadir = os.path.join(tmp, "node")
    daemon = start_follower(options, platform, datadir,
                            extra=["-rpcport=0", f"-rpcauth={rpcauth('u', 'p')}", *extra])
    wait_synced_at(datadir, platform, daemon=daemon)
    return platform, daemon, datadir, Api(datadir)


def test_read_methods_agree_with_the_contracts_and_proofs_verify(options, tmp):
    platform, daemon, datadir, api = _started(options, tmp)
    try:
        status = api.call("bitacora_status")
        size = status["ledger"]["size"]
        check(size > 100, f"ledger size {size}")
        evm = status["sources"]["evm"]
        check(evm["state"] == "following" and evm["finalBlock"] == platform.head()[0] - 64, f"evm status {evm}")
        check(evm["reconciliation"]["checked"] and evm["reconciliation"]["escrowMatches"], "reconciliation in status")

        escrow, vault, evmlib = platform.escrow_art, platform.vault_art, platform.evm
        for order_id in (1, 7, 30):
            order = api.call("escrow_getOrder", str(order_id))
            raw = platform.rpc.call("eth_call", {"to": platform.escrow,
                                                 "data": escrow.calldata("getOrder(uint256)", evmlib.enc_uint(order_id))},
                                    "latest")
            words = [raw[2 + 64 * k:2 + 64 * (k + 1)] for k in range(7)]
            check(order["stateCode"] == int(words[2], 16), f"order {order_id} state")
            check(order["amount"] == str(int(words[4], 16)), f"order {order_id} amount is a decimal string")
            check(order["status"] == "final", f"order {order_id} is final")
            check(order["history"] and order["history"][0]["kind"] == "order_created", "order history")
        check(api.error("escrow_getOrder", "999999") == -32001, "unknown order")

        actor = platform.workload.actors[0]
        position = api.call("vault_getPosition", actor)
        shares = int(platform.rpc.call("eth_call", {"to": platform.vault, "data": vault.calldata(
            "balanceOf(address)", evmlib.enc_address(actor))}, "latest"), 16)
        check(int(position["shares"]) == shares, "vault position shares")
        reputation = api.call("escrow_getReputation", actor)
        expected = int(platform.rpc.call("eth_call", {"to": platform.escrow, "data": escrow.calldata(
            "reputation(address)", evmlib.enc_address(actor))}, "latest"), 16)
        check(reputation["reputation"] == expected, "reputation")
        totals = api.call("ledger_getTotals")
        check(totals["orders"] == 60 and totals["escrowLocked"] == "0", f"totals {totals}")

        event = api.call("ledger_getEvent", 0)
        check(event["status"] == "final" and event["leaf"].startswith("0x01"), "event 0")
        checkpoint = api.call("ledger_getCheckpoint")
        check(checkpoint["treeSize"] == size and len(checkpoint["signature"]) == 2 + 128, "checkpoint")
        root = unhex(checkpoint["root"])
        for index in (0, 1, size // 2, size - 1):
            proof = api.call("ledger_getInclusionProof", index)
            check(verify_inclusion(index, size, unhex(proof["leaf"]), [unhex(p) for p in proof["path"]],
                                   root), f"inclusion proof of {index}")
            check(proof["leaf"] == api.call("ledger_getEvent", index)["leaf"], "proof leaf is the event's leaf")
        old = api.call("ledger_getInclusionProof", 3, 10)
        check(old["treeSize"] == 10 and verify_inclusion(3, 10, unhex(old["leaf"]),
                                                         [unhex(p) for p in old["path"]],
                                                         unhex(old["root"])), "proof at an older size")
        for first in (1, 7, 64, size // 3):
            proof = api.call("ledger_getConsistencyProof", first, size)
            check(verify_consistency(first, size, unhex(proof["firstRoot"]), unhex(proof["secondRoot"]),
                                     [unhex(p) for p in proof["path"]]), f"consistency {first}->{size}")
            check(proof["secondRoot"] == checkpoint["root"], "consistency proof ends at the checkpoint's root")
        check(api.error("ledger_getInclusionProof", size, size) == -32001, "index past the end")
        names = {m["name"] for m in api.call("rpc_methods")}
        check({"bitacora_status", "escrow_getOrder", "ledger_getInclusionProof"} <= names, f"methods {names}")
    finally:
        daemon.stop()
        platform.stop()


def test_pending_records_say_so_until_final(options, tmp):
    platform, daemon, datadir, api = _started(options, tmp, waves=1)
    try:
        platform.waves(1)  # 20 new orders, in blocks that are not final yet
        wait_synced_at(datadir, platform, daemon=daemon)
        order = api.call("escrow_getOrder", "25")
        check(order["status"] == "pending", f"order 25 should be pending: {order['status']}")
        check(api.error("escrow_getOrder", "25", False) == -32001, "a pending-only order is not in the final view")
        final_list = api.call("escrow_getOrders", {}, None, 1000)
        check(all(o["status"] == "final" for o in final_list["orders"]) and
              "25" not in [o["orderId"] for o in final_list["orders"]], "the default list is the final log")
        with_pending = api.call("escrow_getOrders", {}, None, 1000, True)["orders"]
        pending_ids = [o["orderId"] for o in with_pending if o["status"] == "pending"]
        check("25" in pending_ids and len(with_pending) == len(final_list["orders"]) + 20,
              f"includePending lists the 20 pending-only orders after the final ones: {pending_ids}")
        check([int(o["orderId"]) for o in with_pending] == sorted(int(o["orderId"]) for o in with_pending), "in id order")
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        check(api.call("escrow_getOrder", "25")["status"] == "final", "order 25 final after 64 blocks")
    finally:
        daemon.stop()
        platform.stop()


def test_every_error_code_auth_and_limit(options, tmp):
    platform, daemon, datadir, api = _started(options, tmp, extra=["-rpcmaxbody=4096", "-rpcmaxbatch=5"], waves=1)
    try:
        status, answer = api.post(b"{not json")
        check(status == 200 and answer["error"]["code"] == -32700, "parse error")
        check(api.post(b"[]")[1]["error"]["code"] == -32600, "empty batch")
        check(api.post({"jsonrpc": "2.0", "id": 1})[1]["error"]["code"] == -32600, "no method")
        check(api.error("nope_nothing") == -32601, "unknown method")
        check(api.error("escrow_getOrder") == -32602, "missing param")
        check(api.error("escrow_getOrder", "not a number") == -32602, "bad param")
        check(api.error("vault_getPosition", "0x1234") == -32602, "bad address")
        check(api.error("escrow_getOrder", "424242") == -32001, "not found")
        batch = [{"jsonrpc": "2.0", "id": i, "method": "bitacora_status"} for i in range(6)]
        status, answer = api.post(batch)
        check(status == 200 and len(answer) == 1 and answer[0]["id"] == 0 and answer[0]["error"]["code"] == -32600
              and answer[0]["error"]["message"] == "batch too large", f"batch over the limit, as geth: {answer}")
        status, answer = api.post([{"jsonrpc": "2.0", "id": 1, "method": "bitacora_status"},
                                   {"jsonrpc": "2.0", "method": "bitacora_status"},
                                   {"jsonrpc": "2.0", "id": 2, "method": "nope"}])
        check(status == 200 and [a["id"] for a in answer] == [1, 2], "a batch answers all but notifications")
        check(api.post({"jsonrpc": "2.0", "method": "bitacora_status"})[0] == 204, "a notification gets 204")
        check(api.post(b"x" * 8192)[0] == 413, "a body over -rpcmaxbody is refused")

        for credentials in (None, "u:wrong"):
            status, answer = api.post({"jsonrpc": "2.0", "id": 1, "method": "bitacora_status"}, credentials=credentials)
            check(status == 401 and answer["id"] is None and answer["error"]["code"] == -32040,
                  f"credentials {credentials}: a 401 with a JSON-RPC error body: {status} {answer}")
        check(api.call("bitacora_status", credentials="u:p")["ledger"]["size"] > 0, "rpcauth credentials")

        check(api.post(b"", path="/health", method="GET")[0] == 200, "health")
        request = urllib.request.Request(api.url + "metrics")
        with urllib.request.urlopen(request, timeout=10) as answer:
            metrics = answer.read().decode()
        for name in ('bitacora_sync_final_block{source="evm"}', 'bitacora_rpc_calls_total{method="escrow_getOrder"}',
                     "bitacora_rpc_auth_failures_total 1", "bitacora_reorgs_total", "bitacora_rpc_queue_depth"):
            check(name in metrics, f"{name} not in /metrics")
        check(api.post(b"{}", method="GET")[0] == 405, "GET / is refused")
        check(api.post(b"{}", path="/wallet/x")[0] == 404, "unknown path")
        # The server is still up and answering after all of that.
        check(api.call("bitacora_status")["ledger"]["size"] > 0, "still serving")
    finally:
        daemon.stop()
        platform.stop()
    cookie = os.path.join(datadir, "regtest", ".cookie")
    check(not os.path.exists(cookie), "the cookie is removed at shutdown")


def test_bitcoin_cli_request_and_cast_rpc_are_real_clients(options, tmp):
    platform, daemon, datadir, api = _started(options, tmp, waves=1)
    try:
        with open(os.path.join(FIXTURES, "bitcoin-cli-request.json")) as f:
            fixture = json.load(f)
        raw = (fixture["http_head"] + "\r\n\r\n" + fixture["http_body"]).encode()
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200"), f"bitcoin-cli's request: {head[:40]!r}")
        answer = json.loads(body)
        check(answer["id"] == "1" and answer["result"]["orderId"] == "7", f"bitcoin-cli's answer: {answer}")

        cast = os.path.join(options.contracts, "node_modules", ".bin", "cast")
        url = f"http://{api.cookie}@127.0.0.1:{api.port}"
        out = subprocess.run([cast, "rpc", "--rpc-url", url, "escrow_getOrder", "7"], capture_output=True, text=True,
                             timeout=60)
        check(out.returncode == 0, f"cast rpc failed: {out.stderr}")
        check(json.loads(out.stdout)["orderId"] == "7", f"cast rpc answer: {out.stdout}")
        out = subprocess.run([cast, "rpc", "--rpc-url", url, "ledger_getInclusionProof", "3"], capture_output=True,
                             text=True, timeout=60)
        check(out.returncode == 0 and "path" in json.loads(out.stdout), f"cast rpc proof: {out.stdout} {out.stderr}")
    finally:
        daemon.stop()
        platform.stop()


def _flip_hex(text):
    """The first hex digit after the 0x changed."""
    at = 2 if text[:2] == "0x" else 0
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1:]


def _tampered(bundle):
    """Every field of a proof bundle changed in turn: (what, bundle)."""
    import copy
    out = []
    def variant(what, change):
        b = copy.deepcopy(bundle)
        change(b)
        out.append((what, b))
    variant("proof.leaf", lambda b: b["proof"].update(leaf=b["proof"]["leaf"][:-2] + "ff"))
    for i in range(len(bundle["proof"]["path"])):
        variant(f"proof.path[{i}]", lambda b, i=i: b["proof"]["path"].__setitem__(i, _flip_hex(b["proof"]["path"][i])))
    variant("proof.path (one dropped)", lambda b: b["proof"]["path"].pop())
    variant("proof.root", lambda b: b["proof"].update(root=_flip_hex(b["proof"]["root"])))
    variant("proof.index", lambda b: b["proof"].update(index=b["proof"]["index"] + 1))
    variant("proof.treeSize", lambda b: b["proof"].update(treeSize=b["proof"]["treeSize"] + 1))
    variant("index", lambda b: b.update(index=b["index"] + 1))
    variant("event.kind", lambda b: b["event"].update(kind="anchor"))
    variant("checkpoint.root", lambda b: b["checkpoint"].update(root=_flip_hex(b["checkpoint"]["root"])))
    variant("checkpoint.treeSize", lambda b: b["checkpoint"].update(treeSize=b["checkpoint"]["treeSize"] + 1))
    variant("checkpoint.timestamp", lambda b: b["checkpoint"].update(timestamp=b["checkpoint"]["timestamp"] + 1))
    variant("checkpoint.signature", lambda b: b["checkpoint"].update(signature=_flip_hex(b["checkpoint"]["signature"])))
    variant("checkpoint.publicKey", lambda b: b["checkpoint"].update(publicKey=_flip_hex(b["checkpoint"]["publicKey"])))
    variant("version", lambda b: b.update(version=3))
    return out


def test_bitacora_cli_calls_methods_and_verifies_proofs_offline(options, tmp):
    platform, daemon, datadir, api = _started(options, tmp, waves=1)
    cli = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
    base = [cli, "-chain=regtest", f"-datadir={datadir}", f"-rpcport={api.port}"]

    def run(*args, expect=0, command=None):
        out = subprocess.run(command or [*base, *args], capture_output=True, text=True, timeout=60)
        check(out.returncode == expect, f"bitacora-cli {' '.join(args)}: exit {out.returncode}: {out.stdout} {out.stderr}")
        return out.stdout, out.stderr

    try:
        check(json.loads(run("escrow_getOrder", "7")[0])["orderId"] == "7", "positional call with the cookie")
        check(json.loads(run("-named", "escrow_getOrder", "orderId=7", "includePending=false")[0])["status"] == "final",
              "named call")
        status = json.loads(run(command=[cli, f"-rpcport={api.port}", "-rpcuser=u", "-rpcpassword=p",
                                         "bitacora_status"])[0])
        check(status["ledger"]["size"] > 0, "rpcuser/rpcpassword")
        run(command=[cli, f"-rpcport={api.port}", "-rpcuser=u", "-rpcpassword=nope", "bitacora_status"], expect=1)
        listing = run("help")[0]
        check("escrow_getOrder orderId ( includePending )" in listing and "verifyproof" in listing, "help lists methods")
        check("Arguments:" in run("help", "ledger_getInclusionProof")[0], "help for one method")
        _, err = run("escrow_getOrder", "4242424", expect=127)
        check("error code: -32001" in err, f"errors go to stderr with their code: {err}")
        # An empty positional cursor is refused (it is no cursor); null skips it.
        _, err = run("escrow_getOrders", "{}", "", "3", expect=127)
        check("error code: -32602" in err and "cursor" in err, f"an empty cursor: {err}")
        page = json.loads(run("escrow_getOrders", "{}", "null", "3")[0])
        check(len(page["orders"]) == 3 and page["nextCursor"] == "4", f"null skips the cursor: {page['nextCursor']}")
        page = json.loads(run("escrow_getOrders", "{}", page["nextCursor"], "3")[0])
        check([o["orderId"] for o in page["orders"]] == ["4", "5", "6"], "the next page from the cursor")

        key = status["ledger"]["checkpointKey"]
        size = status["ledger"]["size"]
        bundles = []
        for index in (0, size // 2, size - 1):
            path = os.path.join(tmp, f"proof-{index}.json")
            with open(path, "w") as f:
                f.write(run("ledger_getProofBundle", str(index))[0])
            bundles.append(path)
    finally:
        daemon.stop()
        platform.stop()
    # Offline from here: no daemon, no node.
    for path in bundles:
        out, _ = run("verifyproof", path, f"-checkpointkey={key}", command=[cli, "verifyproof", path, f"-checkpointkey={key}"])
        check(out.startswith("VALID"), f"a genuine bundle verifies: {out}")
    run(command=[cli, "verifyproof", bundles[0], "-checkpointkey=" + _flip_hex(key)], expect=1)
    with open(bundles[1]) as f:
        bundle = json.load(f)
    variants = _tampered(bundle)
    check(len(variants) >= 14, "every field is tampered with")
    for what, changed in variants:
        path = os.path.join(tmp, "tampered.json")
        with open(path, "w") as f:
            json.dump(changed, f)
        out = subprocess.run([cli, "verifyproof", path, f"-checkpointkey={key}"], capture_output=True, text=True, timeout=30)
        check(out.returncode == 1 and out.stdout.startswith("INVALID"), f"tampered {what} was accepted: {out.stdout}")
    # Hostile files: nested 200,000 deep (nlohmann's destructor recursed once per level), and
    # an endless one. A clear refusal, no crash.
    deep = os.path.join(tmp, "deep.json")
    with open(deep, "w") as f:
        f.write("[" * 200_000)
    for path in (deep, "/dev/zero"):
        for command in ("verifyproof", "exportots"):
            args = [cli, command, path] + ([os.path.join(tmp, "out.ots")] if command == "exportots" else [])
            out = subprocess.run(args, capture_output=True, text=True, timeout=60)
            check(out.returncode == 1 and "is not a proof bundle" in out.stderr, f"{command} {path}: {out.returncode} {out.stderr}")


def test_zmq_subscribers_see_every_final_event_once_in_order(options, tmp):
    import zmq
    from harness import free_port
    platform = Platform(options, tmp, seed=23)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    datadir = os.path.join(tmp, "node")
    daemon = start_follower(options, platform, datadir, extra=["-rpcport=0", f"-zmqpubevent={endpoint}"])
    try:
        sub.connect(endpoint)
        wait_for(lambda: "EVM synced" in read_log(datadir), 60, "the follower")  # nothing final yet
        platform.waves(3)
        reorged, head_hash = platform.head()
        wait_for(lambda: f"pending tip {reorged} {head_hash}" in read_log(datadir), 60, "the follower at the head")
        platform.rpc.call("anvil_reorg", 3, [])  # takes back pending events: rollback.* messages
        platform.resync_workload()
        platform.waves(1)
        platform.mine(70)
        synced = wait_synced_at(datadir, platform, daemon=daemon)
        size = int(synced["size"])
        messages = []
        sequences = {}
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        finals = 0
        while finals < size and poller.poll(10_000):
            topic, body, seq = sub.recv_multipart()
            check(len(seq) == 4, "the sequence number is 4 bytes")
            number = int.from_bytes(seq, "little")
            # Pending events of the chain as it stood at start are announced at once and may
            # precede our subscription (ZMQ's slow joiner); every other topic starts with us.
            first = number if topic.startswith(b"pending.") else 0
            expected = sequences.get(topic, first)
            check(number == expected, f"topic {topic!r}: sequence {number}, expected {expected}")
            sequences[topic] = number + 1
            message = json.loads(body)
            messages.append((topic.decode(), message))
            finals += topic.startswith(b"final.")
        final = [m for t, m in messages if t.startswith("final.")]
        check([m["index"] for m in final] == list(range(size)), "every final event once, in log order")
        check(all(t == "final." + m["event"]["kind"] for t, m in messages if t.startswith("final.")), "topic per kind")
        rolled_back = [m for t, m in messages if t.startswith("rollback.")]
        check(rolled_back and all(m["status"] == "rolledBack" for m in rolled_back),
              f"a reorg of 3 blocks at {reorged} published its pending events as rolled back")
        api = Api(datadir)
        check(final[5]["leaf"] == api.call("ledger_getEvent", 5)["leaf"], "a message carries the event's leaf")
    finally:
        daemon.stop()
        sub.close(linger=0)
        context.term()
        platform.stop()


def test_submitted_offchain_events_are_checked_signed_and_idempotent(options, tmp):
    cli = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
    key_file = os.path.join(tmp, "backend.key")

    def sign(kind, key, payload, keyfile=key_file):
        out = subprocess.run([cli, f"-signkey={keyfile}", "signoffchain", kind, key, json.dumps(payload)],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, f"signoffchain: {out.stderr}")
        return json.loads(out.stdout)

    offer = {"offerId": "o-1", "seller": "0x" + "ab" * 20, "amount": "250000000", "fiatCurrency": "EUR", "price": "92"}
    first = sign("offer.posted", "k-1", offer)
    platform, daemon, datadir, api = _started(options, tmp, extra=[f"-backendkey={first['submitter']}"], waves=1)
    try:
        def submit(params, credentials="cookie"):
            status, answer = api.post({"jsonrpc": "2.0", "id": 1, "method": "ledger_submitEvent", "params": params},
                                      credentials)
            check(status == 200, f"HTTP {status}")
            return answer

        size = api.call("bitacora_status")["ledger"]["size"]
        answer = submit(first)
        check(answer.get("result", {}).get("index") == size, f"appended at the end of the log: {answer}")
        again = submit(first)
        check(again["result"]["index"] == size, "a retry returns the first index")
        check(api.call("bitacora_status")["ledger"]["size"] == size + 1, "a retry appends nothing")
        event = api.call("ledger_getEvent", size)["event"]
        check(event["kind"] == "offchain" and event["fields"]["offchainKind"] == "offer.posted", "stored event")
        check(json.loads(event["fields"]["payload"]) == offer, "stored payload")

        other = sign("offer.posted", "k-1", dict(offer, price="93"))
        check(submit(other)["error"]["code"] == -32043, "an idempotency key reused for another event")
        forged = dict(first, idempotencyKey="k-2")  # the signature covers the key
        check(submit(forged)["error"]["code"] == -32602, "a signature over another event")
        stranger = sign("offer.posted", "k-3", offer, keyfile=os.path.join(tmp, "stranger.key"))
        check(submit(stranger)["error"]["code"] == -32044, "a submitter that is not configured")
        for kind, payload in (("offer.posted", dict(offer, amount="12.5")),
                              ("offer.posted", {k: v for k, v in offer.items() if k != "seller"}),
                              ("offer.posted", dict(offer, extra="x")),
                              ("offer.posted", dict(offer, fiatCurrency="euro")),
                              ("dispute.note", {"orderId": "7", "author": "0x" + "ab" * 20, "noteHash": "0x12"}),
                              ("offer.exploded", {"offerId": "o-1"})):
            bad = sign(kind, "k-bad", payload)
            check(submit(bad)["error"]["code"] == -32602, f"schema: {kind} {payload}")
        note = sign("dispute.note", "k-4", {"orderId": "7", "author": "0x" + "cd" * 20, "noteHash": "0x" + "11" * 32})
        check("result" in submit(note), "a dispute note")
        status, _ = api.post({"jsonrpc": "2.0", "id": 1, "method": "ledger_submitEvent", "params": first}, credentials=None)
        check(status == 401, "writes need credentials")
    finally:
        daemon.stop()
        platform.stop()


def test_order_lists_filter_and_paginate_stably_while_the_log_grows(options, tmp):
    import threading
    platform, daemon, datadir, api = _started(options, tmp, waves=2)
    try:
        # Page through all orders (7 a page) while more waves are followed and finalized.
        stop = threading.Event()

        def grow():
            for _ in range(4):
                platform.waves(1)
                platform.mine(30)
            stop.set()
        grower = threading.Thread(target=grow)
        grower.start()
        seen = []
        cursor = None
        while True:
            page = api.call("escrow_getOrders", {}, cursor, 7)
            seen += [int(o["orderId"]) for o in page["orders"]]
            check(all(o["status"] == "final" for o in page["orders"]), "listed orders are final")
            cursor = page["nextCursor"]
            if cursor is None:
                if stop.is_set():
                    break
                cursor = str(seen[-1] + 1) if seen else None  # caught up: resume after the last order seen
        grower.join()
        check(seen == sorted(set(seen)), "pages never repeat or reorder an order")
        check(seen == list(range(1, len(seen) + 1)), "no order is skipped")
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        total = api.call("ledger_getTotals")["orders"]
        rest = api.call("escrow_getOrders", {}, str(seen[-1] + 1), 1000)
        check(seen + [int(o["orderId"]) for o in rest["orders"]] == list(range(1, total + 1)), "all orders, once")

        seller = api.call("escrow_getOrder", "3")["seller"]
        by_seller = api.call("escrow_getOrders", {"seller": seller}, None, 1000)["orders"]
        check(by_seller and all(o["seller"] == seller for o in by_seller), "filter by seller")
        everything = api.call("escrow_getOrders", {}, None, 1000)["orders"]
        check(len(by_seller) == sum(o["seller"] == seller for o in everything), "the seller index is complete")
        done = api.call("escrow_getOrders", {"state": "complete", "buyer": everything[0]["buyer"]}, None, 1000)["orders"]
        check(all(o["state"] == "complete" and o["buyer"] == everything[0]["buyer"] for o in done), "state and buyer")
        check(api.error("escrow_getOrders", {"state": "lost"}) == -32602, "unknown state")

        history = api.call("escrow_getOrderEvents", "3")["events"]
        check(history[0]["event"]["kind"] == "order_created" and history[0]["event"]["fields"]["orderId"] == "3",
              "an order's events")
        block = history[0]["event"]["origin"]["blockNumber"]
        in_block = api.call("ledger_getEvents", 0, 1000, block, block)["events"]
        check(in_block and all(e["event"]["origin"]["blockNumber"] == block for e in in_block), "events of a block")
        check(history[0]["index"] in [e["index"] for e in in_block], "the order's creation is among its block's events")
        # Everything that concerns one account, page by page, equals a scan of the whole log.
        account = everything[0]["seller"]
        by_account, cursor = [], None
        while True:
            page = api.call("ledger_getEventsByAccount", account, cursor, 25)
            by_account += [e["index"] for e in page["events"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        expected, cursor = [], None
        while True:
            page = api.call("ledger_getEvents", None, 1000, None, None, cursor)
            for e in page["events"]:
                f = e["event"]["fields"]
                order_id = f.get("orderId")
                parties = {v for k, v in f.items() if isinstance(v, str) and v.startswith("0x") and len(v) == 42}
                mine = account in parties and not (f.get("from") == f.get("to") == "0x" + "00" * 20)
                if order_id is not None:
                    order = api.call("escrow_getOrder", order_id, False)
                    mine = account in (order["seller"], order["buyer"])
                if mine:
                    expected.append(e["index"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        check(by_account == expected, f"events by account: {len(by_account)} listed, {len(expected)} in the log")
        check(len(by_account) > 10, "the account has events")

        page = api.call("ledger_getEvents", 10, 5)
        check([e["index"] for e in page["events"]] == list(range(10, 15)) and page["nextCursor"] == "15", "by index")
        _check_one_pagination_convention(api, everything, by_account, account)
    finally:
        daemon.stop()
        platform.stop()


def _check_one_pagination_convention(api, orders, by_account, account):
    """Every list: `cursor` (a string, inclusive) and `limit` in, `nextCursor` (a string, or
    null at the end) out; a position past the end and anything but a returned cursor are
    refused (issue 13: four conventions, afterIndex exclusive, silence past the end)."""
    size = api.call("bitacora_status")["ledger"]["size"]
    first_order = orders[0]["orderId"]
    lists = [("escrow_getOrders", [{}], "orders"), ("ledger_getEventsByAccount", [account], "events"),
             ("escrow_getOrderEvents", [first_order], "events"), ("ledger_getAnchors", [], "anchors")]
    for method, head, items in lists:
        answer = api.call(method, *head, None, 2)
        check(set(answer) >= {items, "nextCursor"} and not {"next", "nextIndex"} & set(answer), f"{method}: {answer.keys()}")
        check(len(answer[items]) <= 2, f"{method}: limit 2")
        check(answer["nextCursor"] is None or isinstance(answer["nextCursor"], str), f"{method}: nextCursor a string")
        for bad in ("", "x", "-1", "1.5", str(2**64)):
            check(api.error(method, *head, bad) == -32602, f"{method}: cursor {bad!r} is refused")
        check(api.error(method, *head, None, 0) == -32602 and api.error(method, *head, None, 1001) == -32602,
              f"{method}: limit 1 to 1000")
    # Inclusive: the cursor "0" of an account's events starts at event 0 (afterIndex=0 skipped it).
    check(api.call("ledger_getEventsByAccount", account, "0", 1000)["events"][0]["index"] == by_account[0],
          "cursor 0 is inclusive")
    zero = api.call("ledger_getEvent", 0)["event"]["fields"]
    zero_party = next(zero[k] for k in ("account", "seller", "owner") if k in zero)
    check(api.call("ledger_getEventsByAccount", zero_party, "0", 5)["events"][0]["index"] == 0,
          "event 0 is listed from cursor 0")
    # Past the end: an error, not an empty page.
    check(api.error("ledger_getEvents", size + 1) == -32001, "fromIndex past the log's end")
    check(api.error("ledger_getEvents", None, 5, None, None, str(size + 1)) == -32602, "cursor past the log's end")
    check(api.error("ledger_getEventsByAccount", account, str(size + 1)) == -32602, "account cursor past the end")
    check(api.error("ledger_getEvents", 3, 5, None, None, "4") == -32602, "fromIndex or cursor, not both")
    at_end = api.call("ledger_getEvents", size, 5)
    check(at_end["events"] == [] and at_end["nextCursor"] is None, "fromIndex = size: an empty last page")
    last = int(orders[-1]["orderId"])
    check(api.error("escrow_getOrders", {}, str(last + 2)) == -32602, "an order cursor past the last order")
    # A page boundary repeats and skips nothing, with the explicit end marker.
    seen, cursor = [], None
    while True:
        page = api.call("ledger_getEventsByAccount", account, cursor, 7)
        seen += [e["index"] for e in page["events"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    check(seen == by_account, "7 a page gives the same events as 25 a page")


def _vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _raw_http(port, data, read=True, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b"".join(chunks)


def test_hostile_clients_neither_kill_nor_exhaust_the_daemon(options, tmp):
    """Each of these killed bitacorad or grew it without a bound (issue 12)."""
    platform, daemon, datadir, api = _started(
        options, tmp, waves=2,
        extra=["-rpcopenreads=1", "-rpcmaxconnections=16", "-rpctimeout=3", "-rpcmaxresponse=65536",
               "-rpcmaxbody=1000000"])
    pid = daemon.proc.pid
    try:
        # Deep nesting in the id (a 117 KB body) and in the params of a notification.
        deep_id = b'{"jsonrpc":"2.0","method":"bitacora_status","id":' + b"[" * 58000 + b"]" * 58000 + b"}"
        status, answer = api.post(deep_id, credentials=None)
        check(status == 200 and answer["error"]["code"] == -32600, f"a deep id is refused: {status} {answer}")
        deep_params = b'{"jsonrpc":"2.0","method":"ledger_getEvent","params":' + b"[" * 100000 + b"]" * 100000 + b"}"
        status, answer = api.post(deep_params, credentials=None)
        check(status == 200 and answer["error"]["code"] == -32600, "deep params are refused")
        check(daemon.proc.poll() is None and api.call("bitacora_status")["ledger"]["size"] > 0, "alive after deep JSON")

        # One batch of 100 x ledger_getEvents(0, 1000) took 99 MB and 430 MB of RSS.
        size = api.call("bitacora_status")["ledger"]["size"]
        check(size > 150, f"the ledger holds enough events ({size})")
        rss_before = _vm_kib(pid, "VmRSS")
        batch = [{"jsonrpc": "2.0", "id": i, "method": "ledger_getEvents", "params": [0, 1000]} for i in range(100)]
        status, answers = api.post(batch, credentials=None)
        body_bytes = len(json.dumps(answers))
        check(status == 200 and len(answers) == 100, "the batch is answered call by call")
        check(body_bytes < 65536 + 100 * 300, f"the batch answer is within -rpcmaxresponse ({body_bytes} bytes)")
        first = answers[0]["result"]
        check(0 < len(first["events"]) < size and first["nextCursor"] == str(len(first["events"])),
              "a list stops early at the byte budget with its continuation marker")
        check(answers[-1]["error"]["code"] == -32041, "calls past the budget get a limit error")
        # Clients that never read their answers: the answers are bounded, so is the memory.
        lazy = []
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
            body = json.dumps(batch).encode()
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                         str(len(body)).encode() + b"\r\n\r\n" + body)
            lazy.append(sock)
        wait_for(lambda: api.call("bitacora_status") is not None, 30, "the daemon to answer beside lazy clients")
        grown_kib = _vm_kib(pid, "VmRSS") - rss_before
        for sock in lazy:
            sock.close()
        check(grown_kib < 200 * 1024, f"8 clients that never read grew RSS by {grown_kib} KiB")

        # Slowloris: 40 connections trickling header bytes, with -rpcmaxconnections=16 and
        # -rpctimeout=3. Every accepted one counts and is closed 3 s after its accept.
        slow = []
        for _ in range(40):
            sock = socket.socket()
            sock.settimeout(10)
            sock.connect(("127.0.0.1", api.port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        started = time.monotonic()
        open_socks = list(slow)
        while open_socks and time.monotonic() - started < 15:
            time.sleep(0.5)
            still = []
            for sock in open_socks:
                try:
                    sock.sendall(b"X-Slow: a\r\n")
                    still.append(sock)
                except OSError:
                    pass
            open_socks = still
        check(not open_socks, f"{len(open_socks)} slow connections were still open after 15 s")
        for sock in slow:
            sock.close()
        check(api.call("bitacora_status")["ledger"]["size"] > 0, "serving after slowloris")

        # Framing a proxy could read otherwise is refused.
        answer = _raw_http(api.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
        check(answer.startswith(b"HTTP/1.1 400"), f"two Content-Lengths are refused: {answer[:40]!r}")
        # The largest id does not wrap to the first anchor: it is no cursor of a list.
        check(api.error("ledger_getAnchors", str(2**64 - 1)) == -32602, "cursor 2^64-1 is refused")
        with open(f"/proc/{pid}/status") as f:
            peak = [line for line in f if line.startswith("VmHWM")][0].split()[1]
        print(f"hostile clients: peak RSS {int(peak) // 1024} MiB", flush=True)
        check(daemon.proc.poll() is None, "bitacorad is alive")
    finally:
        daemon.stop()
        platform.stop()


if __name__ == "__main__":
    main([
        test_read_methods_agree_with_the_contracts_and_proofs_verify,
        test_pending_records_say_so_until_final,
        test_every_error_code_auth_and_limit,
        test_hostile_clients_neither_kill_nor_exhaust_the_daemon,
        test_bitcoin_cli_request_and_cast_rpc_are_real_clients,
        test_bitacora_cli_calls_methods_and_verifies_proofs_offline,
        test_zmq_subscribers_see_every_final_event_once_in_order,
        test_submitted_offchain_events_are_checked_signed_and_idempotent,
        test_order_lists_filter_and_paginate_stably_while_the_log_grows,
    ])
