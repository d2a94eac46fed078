"""The Bitcoin follower and anchoring against a bitcoind: the regtest double in CI, a
real node when BITCOIND names a bitcoind binary (tests/integration/btc_node.py).

The whole anchoring flow to final with proofs checked by bitacora-cli, the OpenTimestamps
library and the auditor guide's verifier; a reorg that drops the anchor's block; a
kill -9 during every anchoring step; fee bumps; a pruned anchor block; ZMQ gaps and
disconnects; and the errors (no funds, no wallet, node down)."""

import base64
import copy
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from btc_node import BtcNode  # noqa: E402
from harness import Daemon, check, double_only, free_port, main, wait_for  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIRMATIONS = 3
WALLET = "anchor"


# --- helpers ---------------------------------------------------------------------------

def read_log(datadir):
    try:
        with open(os.path.join(datadir, "regtest", "debug.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Api:
    def __init__(self, datadir, daemon, log_offset=0):
        import re
        # Only this run's lines: a restarted daemon's log still holds the last run's port.
        match = wait_for(lambda: daemon.proc.poll() is None and
                         re.search(r"RPC server on port (\d+)", read_log(datadir)[log_offset:])
                         or (daemon.proc.poll() is not None and _died(daemon, datadir)), 30, "the RPC server")
        self.port = int(match.group(1))
        with open(os.path.join(datadir, "regtest", ".cookie")) as f:
            self.cookie = f.read().strip()

    def call(self, method, *params, timeout=30, named=None):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": named if named is not None else list(params)}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/", data=body,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": "Basic " + base64.b64encode(self.cookie.encode()).decode()})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            reply = json.loads(answer.read())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def metrics(self):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics",
                                         headers={"Authorization": "Basic " + base64.b64encode(self.cookie.encode()).decode()})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode()


def _died(daemon, datadir):
    raise AssertionError(f"bitacorad exited with {daemon.proc.returncode}: {daemon.stderr()[-2000:]}{read_log(datadir)[-3000:]}")


class StallProxy:
    """A pass-through HTTP proxy in front of bitcoind that holds chosen calls: `before`
    (bitcoind has not seen the call yet) or `after` (bitcoind did it, the answer is held),
    so that a test can kill bitacorad at that exact step. Works with any bitcoind."""

    def __init__(self, upstream_port):
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.lock = threading.Lock()
        self.rules = {}     # method -> (when, seconds)
        self.hits = {}      # method -> count of held calls
        self.server = None

    def hold(self, method, when, seconds=30):
        with self.lock:
            self.rules = {method: (when, seconds)}
            self.hits = {}

    def release(self):
        with self.lock:
            self.rules = {}

    def held(self, method):
        with self.lock:
            return self.hits.get(method, 0)

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    method = json.loads(body).get("method")
                except (ValueError, AttributeError):
                    method = None
                with proxy.lock:
                    rule = proxy.rules.get(method)
                    if rule:
                        proxy.hits[method] = proxy.hits.get(method, 0) + 1
                if rule and rule[0] == "before":
                    time.sleep(rule[1])
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json",
                                                          "Authorization": self.headers.get("Authorization", "")})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, data = answer.status, answer.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                except OSError:
                    status, data = 502, b""
                if rule and rule[0] == "after":
                    time.sleep(rule[1])
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class Signer:
    """Signs off-chain events with bitacora-cli, so that the tests can grow the log."""

    def __init__(self, options, tmp):
        self.cli = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
        self.key_file = os.path.join(tmp, "backend.key")
        self.counter = 0
        self.pubkey = self.sign()["submitter"]

    def sign(self):
        self.counter += 1
        payload = {"offerId": f"o-{self.counter}", "seller": "0x" + "ab" * 20, "amount": str(1000 + self.counter),
                   "fiatCurrency": "EUR", "price": "92"}
        out = subprocess.run([self.cli, f"-signkey={self.key_file}", "signoffchain", "offer.posted",
                              f"k-{self.counter}", json.dumps(payload)], capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, f"signoffchain: {out.stderr}")
        return json.loads(out.stdout)

    def submit(self, api, n):
        for _ in range(n):
            api.call("ledger_submitEvent", named=self.sign())


class Setup:
    """A bitcoind (double or real) with a funded wallet, and bitacorad following it."""

    def __init__(self, options, tmp, fund=True, proxy=False):
        self.options = options
        self.tmp = tmp
        self.node = BtcNode()
        self.node.start(os.path.join(tmp, "bitcoind"))
        self.node.rpc("createwallet", WALLET)
        self.address = self.node.rpc("getnewaddress", wallet=WALLET)
        if fund:
            self.node.rpc("generatetoaddress", 101, self.address)
        self.proxy = StallProxy(self.node.rpc_port).start() if proxy else None
        self.signer = Signer(options, tmp)
        self.datadir = os.path.join(tmp, "bitacora")
        os.makedirs(self.datadir, exist_ok=True)
        self.daemon = None
        self.api = None
        self.start_height = None

    def daemon_args(self, extra=()):
        port = self.proxy.port if self.proxy else self.node.rpc_port
        args = ["-chain=regtest", "-rpcport=0", "-printtoconsole=0", f"-btcrpcconnect=127.0.0.1:{port}",
                f"-btcrpccookiefile={self.node.cookie_path}", f"-btcwallet={WALLET}", "-anchor=0",
                f"-anchorconfirmations={CONFIRMATIONS}", "-anchorretry=1", "-btcpollinterval=200",
                f"-backendkey={self.signer.pubkey}", "-debug=btc", "-debug=anchor"]
        if self.start_height is not None:
            args.append(f"-btcstartheight={self.start_height}")
        return args + list(extra)

    def start(self, extra=()):
        if self.start_height is None:
            self.start_height = self.node.rpc("getblockcount") + 1
        offset = len(read_log(self.datadir))
        self.daemon = Daemon(self.options.bitacorad, self.datadir, self.daemon_args(extra)).start()
        self.api = Api(self.datadir, self.daemon, offset)
        self.wait_synced()
        return self

    def kill_while_held(self, method):
        """Waits until the proxy holds a call of `method`, kills bitacorad with SIGKILL
        right there, lets calls through again and starts bitacorad anew."""
        wait_for(lambda: self.proxy.held(method), 30, f"{method} to be called")
        time.sleep(0.2)
        self.daemon.signal(signal.SIGKILL)
        self.daemon.wait()
        self.proxy.release()
        return self.start()

    def btc(self):
        return self.api.call("bitacora_status")["sources"]["btc"]

    def wait_synced(self, timeout_s=60):
        def synced():
            if self.daemon.proc.poll() is not None:
                _died(self.daemon, self.datadir)
            s = self.btc()
            return s["state"] == "synced" and s["tipHeight"] == self.node.rpc("getblockcount") and s
        return wait_for(synced, timeout_s, "the Bitcoin follower to reach the node's tip")

    def anchor(self, anchor_id):
        return self.api.call("ledger_getAnchor", anchor_id)

    def wait_anchor(self, anchor_id, state, timeout_s=60):
        def reached():
            if self.daemon.proc.poll() is not None:
                _died(self.daemon, self.datadir)
            try:
                a = self.anchor(anchor_id)
            except RuntimeError:
                return None
            return a["state"] == state and a
        return wait_for(reached, timeout_s, f"anchor {anchor_id} to be {state}")

    def mine(self, n=1):
        hashes = self.node.rpc("generatetoaddress", n, self.address)
        self.wait_synced()
        return hashes

    def stop(self):
        if self.daemon:
            self.daemon.stop()
        if self.proxy:
            self.proxy.stop()
        self.node.stop()


def anchor_payloads_on_chain(node, from_height):
    """Every BTCR payload in the best chain from from_height and in the mempool: [(hex, where)]."""
    found = []
    tip = node.rpc("getblockcount")
    for height in range(from_height, tip + 1):
        block = node.rpc("getblock", node.rpc("getblockhash", height), 2)
        for tx in block["tx"]:
            for out in tx["vout"]:
                script = out["scriptPubKey"]["hex"]
                if script.startswith("6a2d42544352"):
                    found.append((script[4:], f"block {height} tx {tx['txid']}"))
    for txid in node.rpc("getrawmempool"):
        tx = node.rpc("getrawtransaction", txid, True)
        for out in tx["vout"]:
            script = out["scriptPubKey"]["hex"]
            if script.startswith("6a2d42544352"):
                found.append((script[4:], f"mempool tx {txid}"))
    return found


def cli(options, *args, expect=None):
    binary = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
    out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    if expect is not None:
        check(out.returncode == expect, f"bitacora-cli {' '.join(args)}: exit {out.returncode}: {out.stdout} {out.stderr}")
    return out


def flip(text, at=0):
    """Hex digit `at` (after the 0x every API hash has) changed."""
    check(text.startswith("0x"), f"hex without 0x: {text!r}")
    at += 2
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1:]


def bitcoind_hex(text):
    """A txid or block hash of the API as bitcoind shows it: the API prefixes 0x (issue 13)."""
    check(text.startswith("0x") and len(text) == 66, f"not a 0x-prefixed hash: {text!r}")
    return text[2:]


def tampered_anchor_fields(bundle):
    """Each anchor field of a bundle changed in turn: [(what, bundle)]."""
    out = []

    def variant(what, change):
        b = copy.deepcopy(bundle)
        change(b["anchor"])
        out.append((what, b))
    a = bundle["anchor"]
    variant("anchor.treeSize", lambda x: x.update(treeSize=x["treeSize"] - 1))
    variant("anchor.root", lambda x: x.update(root=flip(x["root"])))
    variant("anchor.payload", lambda x: x.update(payload=x["payload"][:-2] + "00"))
    variant("anchor.tx (a byte of the payload)", lambda x: x.update(tx=flip(x["tx"], 2 * x["payloadOffset"] + 20)))
    variant("anchor.tx (version)", lambda x: x.update(tx=flip(x["tx"])))
    variant("anchor.txid", lambda x: x.update(txid=flip(x["txid"])))
    variant("anchor.outputIndex", lambda x: x.update(outputIndex=x["outputIndex"] + 1))
    variant("anchor.payloadOffset", lambda x: x.update(payloadOffset=x["payloadOffset"] + 1))
    variant("anchor.txIndex", lambda x: x.update(txIndex=x["txIndex"] ^ 1))
    for i in range(len(a["branch"])):
        variant(f"anchor.branch[{i}]", lambda x, i=i: x["branch"].__setitem__(i, flip(x["branch"][i])))
    variant("anchor.branch (one added)", lambda x: x["branch"].append("0x" + "00" * 32))
    variant("anchor.header (merkle root)", lambda x: x.update(header=flip(x["header"], 80)))
    variant("anchor.header (nonce)", lambda x: x.update(header=flip(x["header"], 158)))
    variant("anchor.blockHash", lambda x: x.update(blockHash=flip(x["blockHash"])))
    return out


def verify_everywhere(options, setup, tmp, bundle, name, node_confirmations=None):
    """bitacora-cli verifyproof offline (and with the node), the auditor guide's verifier,
    and the OpenTimestamps export checked by python-opentimestamps."""
    path = os.path.join(tmp, f"{name}.json")
    with open(path, "w") as f:
        json.dump(bundle, f)
    out = cli(options, "verifyproof", path, "-requireanchor", expect=0)
    check(out.stdout.startswith("VALID") and "anchored by transaction" in out.stdout, out.stdout)
    if node_confirmations is not None:
        node_args = [f"-btcrpcconnect=127.0.0.1:{setup.node.rpc_port}", f"-btcrpccookiefile={setup.node.cookie_path}"]
        out = cli(options, "verifyproof", path, *node_args, f"-minconfirmations={node_confirmations}", expect=0)
        check("best chain" in out.stdout, out.stdout)
        out = cli(options, "verifyproof", path, *node_args, f"-minconfirmations={node_confirmations + 50}", expect=1)
        check("fewer than -minconfirmations" in out.stdout, out.stdout)
    import auditor_guide
    code, text = auditor_guide.run_verifier(REPO, path)
    check(code == 0 and text.startswith("VALID"), f"the auditor guide's verifier: {code} {text}")
    ots_path = os.path.join(tmp, f"{name}.ots")
    cli(options, "exportots", path, ots_path, expect=0)
    import ots_check
    ots_check.verify_ots(ots_path, bundle["proof"]["leaf"], bundle["anchor"]["header"], bundle["anchor"]["blockHeight"])
    return path


# --- tests -----------------------------------------------------------------------------

def test_anchor_flow_to_final_with_proofs_checked_three_ways(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start()
        s.signer.submit(s.api, 4)
        result = s.api.call("admin_anchorNow")
        check(result["anchored"] and result["anchor"]["state"] == "broadcast", f"admin_anchorNow: {result}")
        txid = result["anchor"]["txid"]
        check(bitcoind_hex(txid) in s.node.rpc("getrawmempool"), "the anchor is in the mempool")
        decoded = s.node.rpc("getrawtransaction", bitcoind_hex(txid), True)
        payload = "42544352" + "01" + f"{4:016x}" + result["anchor"]["root"][2:]
        check(any(o["scriptPubKey"]["hex"] == "6a2d" + payload for o in decoded["vout"]),
              "one OP_RETURN output holds BTCR || 01 || size || root")
        check(s.api.call("admin_anchorNow")["anchored"] is False, "one anchor at a time")
        block = s.mine(1)[0]
        confirmed = s.wait_anchor(1, "confirmed")
        check(bitcoind_hex(confirmed["blockHash"]) == block and confirmed["proof"]["txid"] == txid, f"confirmed: {confirmed}")
        s.mine(CONFIRMATIONS - 1)
        final = s.wait_anchor(1, "final")
        check(final["blockHeight"] == confirmed["blockHeight"], "final in the same block")

        events = s.api.call("ledger_getEvents", 0, 100)["events"]
        kinds = [(e["event"]["kind"], e["event"]["fields"].get("stateName")) for e in events]
        check(kinds[4:] == [("anchor", "broadcast"), ("anchor", "confirmed"), ("anchor", "final")],
              f"the anchor's lifecycle is in the log: {kinds}")
        again = s.api.call("admin_anchorNow")
        check(not again["anchored"] and "nothing to anchor" in again["message"], f"no growth, no anchor: {again}")

        s.signer.submit(s.api, 3)
        check(s.api.call("admin_anchorNow")["anchored"], "second anchor")
        s.mine(CONFIRMATIONS)
        second = s.wait_anchor(2, "final")
        check(second["treeSize"] == 7 + 3, f"the second anchor covers everything so far: {second['treeSize']}")
        anchors = s.api.call("ledger_getAnchors")["anchors"]
        check([a["id"] for a in anchors] == [1, 2], "both anchors listed")
        consistency = anchors[1]["consistency"]
        check(consistency["firstSize"] == 4 and consistency["fromAnchor"] == 1 and
              consistency["secondSize"] == second["treeSize"] and consistency["secondRoot"] == second["root"],
              f"consistency: {consistency}")
        from test_api import unhex, verify_consistency
        check(verify_consistency(4, second["treeSize"], unhex(consistency["firstRoot"]),
                                 unhex(second["root"]), [unhex(p) for p in consistency["path"]]),
              "the log only grew between the anchors (RFC 9162 consistency)")
        # The guide's verifier reads the anchor's consistency member and ledger_getConsistencyProof's answer as they are.
        import auditor_guide
        proof = s.api.call("ledger_getConsistencyProof", 4, second["treeSize"])
        check({k: proof[k] for k in proof} == {k: consistency[k] for k in proof}, "one consistency shape: the API's")
        for what, doc in (("anchor", consistency), ("ledger_getConsistencyProof", proof),
                          ("tampered", dict(proof, firstRoot=flip(proof["firstRoot"])))):
            path = os.path.join(tmp, f"consistency-{what}.json")
            with open(path, "w") as f:
                json.dump(doc, f)
            code, text = auditor_guide.run_consistency(REPO, path)
            check((code, text[:6]) == ((1, "INVALI") if what == "tampered" else (0, "VALID:")),
                  f"the guide's --consistency on {what}: {code} {text}")

        metrics = s.api.metrics()
        check('bitacora_anchors_total{state="final"} 2' in metrics, "anchors by state in /metrics")
        check("bitacora_btc_tip_height" in metrics, "Bitcoin sync in /metrics")

        bundles = {}
        for index in (0, 3, 7, 9):
            bundles[index] = s.api.call("ledger_getProofBundle", index)
            expected = 1 if index < 4 else 2
            check(bundles[index]["anchor"]["id"] == expected, f"event {index} is proven by anchor {expected}")
        unanchored = s.api.call("ledger_getProofBundle", s.api.call("bitacora_status")["ledger"]["size"] - 1)
        check(unanchored["anchor"] is None, "the newest events are not anchored yet")
        key = s.api.call("bitacora_status")["ledger"]["checkpointKey"]
        for index, bundle in bundles.items():
            verify_everywhere(options, s, tmp, bundle, f"bundle-{index}", node_confirmations=1 if index > 3 else 3)
        path = os.path.join(tmp, "unanchored.json")
        with open(path, "w") as f:
            json.dump(unanchored, f)
        out = cli(options, "verifyproof", path, f"-checkpointkey={key}", expect=0)
        check("NOT ANCHORED" in out.stdout, out.stdout)
        cli(options, "verifyproof", path, "-requireanchor", expect=1)
        cli(options, "exportots", path, os.path.join(tmp, "x.ots"), expect=1)

        # Every anchor field tampered with is caught by bitacora-cli and by the guide's verifier.
        import auditor_guide
        variants = tampered_anchor_fields(bundles[3])
        check(len(variants) >= 14, "every anchor field is tampered with")
        for what, changed in variants:
            path = os.path.join(tmp, "tampered.json")
            with open(path, "w") as f:
                json.dump(changed, f)
            out = cli(options, "verifyproof", path)
            check(out.returncode == 1 and out.stdout.startswith("INVALID"), f"tampered {what} accepted: {out.stdout}")
            code, text = auditor_guide.run_verifier(REPO, path)
            check(code == 1 and text.startswith("INVALID"), f"the guide's verifier accepted tampered {what}: {text}")
    finally:
        s.stop()


def test_a_reorg_that_drops_the_anchor_block_is_tracked_back(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start()
        s.signer.submit(s.api, 2)
        check(s.api.call("admin_anchorNow")["anchored"], "anchor sent")
        first_block = s.mine(1)[0]
        first = s.wait_anchor(1, "confirmed")
        check(bitcoind_hex(first["blockHash"]) == first_block, "confirmed in the first block")
        # Take the block away: the transaction goes back to the mempool.
        s.node.rpc("invalidateblock", first_block)
        back = s.wait_anchor(1, "broadcast")
        check("blockHash" not in back and back["proof"] is None, f"proof material dropped with the block: {back}")
        check(bitcoind_hex(first["txid"]) in s.node.rpc("getrawmempool"), "the anchor is back in the mempool")
        # Another chain with more work re-mines it.
        other = s.node.rpc("getnewaddress", wallet=WALLET)
        new_blocks = s.node.rpc("generatetoaddress", 2, other)
        s.wait_synced()
        again = s.wait_anchor(1, "confirmed")
        check(bitcoind_hex(again["blockHash"]) == new_blocks[0] and bitcoind_hex(again["blockHash"]) != first_block,
              f"confirmed again in the new chain's block: {again}")
        s.node.rpc("reconsiderblock", first_block)  # the old branch is valid again but has less work
        s.mine(CONFIRMATIONS)
        s.wait_anchor(1, "final")
        states = [e["event"]["fields"]["stateName"] for e in s.api.call("ledger_getEvents", 0, 100)["events"]
                  if e["event"]["kind"] == "anchor"]
        check(states == ["broadcast", "confirmed", "dropped", "confirmed", "final"], f"lifecycle: {states}")
        check(s.btc()["reorgs"] >= 1, "the reorg is counted")
        verify_everywhere(options, s, tmp, s.api.call("ledger_getProofBundle", 0), "reorged", node_confirmations=3)
    finally:
        s.stop()


def test_kill9_during_every_anchoring_step_neither_loses_nor_duplicates(options, tmp):
    s = Setup(options, tmp, proxy=True)
    steps = [("createrawtransaction", "before"), ("fundrawtransaction", "after"),
             ("signrawtransactionwithwallet", "after"), ("sendrawtransaction", "before"),
             ("sendrawtransaction", "after")]
    try:
        s.start()
        from_height = s.node.rpc("getblockcount") + 1
        for anchor_id, (method, when) in enumerate(steps, start=1):
            s.signer.submit(s.api, 2)
            s.proxy.hold(method, when, seconds=60)
            caller = threading.Thread(target=lambda: _quietly(s.api.call, "admin_anchorNow", timeout=15), daemon=True)
            caller.start()
            s.kill_while_held(method)
            # The restarted daemon finishes the step it was killed in (or redoes it).
            result = s.api.call("admin_anchorNow")
            wait_for(lambda: s.anchor(anchor_id)["state"] == "broadcast", 30, f"anchor {anchor_id} broadcast")
            s.mine(CONFIRMATIONS)
            s.wait_anchor(anchor_id, "final")
            payloads = [p for p, _ in anchor_payloads_on_chain(s.node, from_height)]
            check(len(payloads) == len(set(payloads)) == anchor_id,
                  f"after a kill in {method} ({when}): {anchor_payloads_on_chain(s.node, from_height)}; {result}")
        # And once while a block holding an anchor is being read.
        s.signer.submit(s.api, 2)
        check(s.api.call("admin_anchorNow")["anchored"], "anchor sent")
        s.proxy.hold("getblock", "after", seconds=60)
        s.node.rpc("generatetoaddress", 1, s.address)
        s.kill_while_held("getblock")
        s.mine(CONFIRMATIONS - 1)
        final = s.wait_anchor(len(steps) + 1, "final")
        check(final["proof"]["blockHeight"] == s.node.rpc("getblockcount") - CONFIRMATIONS + 1, "proof material stored")
        payloads = [p for p, _ in anchor_payloads_on_chain(s.node, from_height)]
        check(len(payloads) == len(set(payloads)) == len(steps) + 1, "one transaction per anchor")
        verify_everywhere(options, s, tmp, s.api.call("ledger_getProofBundle", 0), "after-kills")
    finally:
        s.stop()


def _quietly(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception:  # the daemon is killed under this call on purpose
        pass


def test_fee_bump_when_the_anchor_lingers_in_the_mempool(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start(extra=["-anchorbumpblocks=2"])
        s.signer.submit(s.api, 2)
        first = bitcoind_hex(s.api.call("admin_anchorNow")["anchor"]["txid"])
        # Blocks that leave the mempool alone: generateblock with no transactions.
        for _ in range(2):
            s.node.rpc("generateblock", s.address, [])
        s.wait_synced()
        bumped = wait_for(lambda: len(s.anchor(1)["txids"]) == 2 and s.anchor(1), 30, "a fee bump")
        replacement = bitcoind_hex(bumped["txids"][1])
        mempool = s.node.rpc("getrawmempool")
        check(replacement in mempool and first not in mempool, "the replacement evicted the first version (BIP125)")
        check(bumped["feeBumps"] == 1, "counted")
        block = s.mine(1)[0]
        confirmed = s.wait_anchor(1, "confirmed")
        check(bitcoind_hex(confirmed["txid"]) == replacement and bitcoind_hex(confirmed["blockHash"]) == block,
              f"the replacement confirmed: {confirmed}")
        check('bitacora_anchor_fee_bumps_total{source="btc"} 1' in s.api.metrics(), "bump in /metrics")
    finally:
        s.stop()


def test_an_anchor_block_pruned_before_it_was_read_is_re_anchored(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start()
        s.signer.submit(s.api, 2)
        check(s.api.call("admin_anchorNow")["anchored"], "anchor sent")
        s.daemon.stop()
        anchor_height = s.node.rpc("getblockcount") + 1
        s.node.rpc("generatetoaddress", 1, s.address)
        # Bury it under more than bitcoind's 288 kept blocks, then prune it away.
        # (-fastprune block files hold ~250 regtest blocks; only whole files are pruned.)
        for _ in range(6):
            s.node.rpc("generatetoaddress", 100, s.address)
        pruned = s.node.rpc("pruneblockchain", s.node.rpc("getblockcount") - 290)
        check(pruned >= anchor_height, f"pruned up to {pruned}, the anchor is at {anchor_height}")
        s.start(extra=["-anchorretry=1"])
        abandoned = wait_for(lambda: s.anchor(1)["state"] == "abandoned" and s.anchor(1), 60, "anchor 1 abandoned")
        check("pruned" in abandoned.get("note", ""), f"why: {abandoned}")
        check(s.btc()["blocksPrunedUnread"] >= 1, "pruned blocks counted")
        check(s.api.call("admin_anchorNow")["anchored"], "re-anchored")
        s.mine(CONFIRMATIONS)
        second = s.wait_anchor(2, "final")
        check(second["treeSize"] >= 2, "the re-anchor covers the events")
        verify_everywhere(options, s, tmp, s.api.call("ledger_getProofBundle", 1), "reanchored")
    finally:
        s.stop()


def test_zmq_announces_every_block(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start()
        check(s.btc()["zmq"]["topic"] == "sequence", f"subscribed to sequence: {s.btc()['zmq']}")
        for _ in range(5):
            s.mine(1)
        latency = s.btc()["zmqToProcessedMs"]
        check(latency["samples"] >= 3 and latency["p99"] < 1000, f"blocks announced by ZMQ: {latency}")
    finally:
        s.stop()


@double_only
def test_zmq_gaps_and_disconnects_resync_over_rpc(options, tmp):
    s = Setup(options, tmp)
    try:
        s.start()
        s.mine(1)
        resyncs = s.btc()["resyncs"]
        s.node.rpc("double_zmqdrop", 3)
        s.node.rpc("generatetoaddress", 3, s.address)
        s.mine(1)  # the next message shows the gap
        wait_for(lambda: s.btc()["zmq"]["gaps"] >= 1 and s.btc()["resyncs"] > resyncs, 30, "a gap noticed")
        s.node.rpc("double_zmqpause", True)
        s.node.rpc("generatetoaddress", 2, s.address)
        s.wait_synced()  # by polling
        s.node.rpc("double_zmqpause", False)
        s.mine(1)
        check(s.btc()["tipHeight"] == s.node.rpc("getblockcount"), "every block processed")
    finally:
        s.stop()


def test_the_first_automatic_anchor_waits_for_the_followers(options, tmp):
    """With an EVM node that never answers, the first automatic anchor waits (at most one
    -anchorinterval); once every follower caught up, it is made at the next step."""
    s = Setup(options, tmp)
    interval_s = 15
    dead_evm = f"http://127.0.0.1:{free_port()}"
    try:
        s.start(extra=["-anchor=1", f"-anchorinterval={interval_s}", f"-evmrpc={dead_evm}",
                       "-escrow=0x" + "11" * 20, "-vault=0x" + "22" * 20, "-evmstartblock=1"])
        started = time.monotonic()
        s.signer.submit(s.api, 3)
        time.sleep(8)  # more than one anchoring step (5 s) after the events arrived
        check(s.btc()["anchoring"]["planned"] == 0,
              "no automatic anchor while the EVM follower has not caught up")
        check("The first anchor waits until the followers have caught up" in read_log(s.datadir), "the wait is logged")
        planned = s.wait_anchor(1, "broadcast", timeout_s=interval_s + 20)
        waited_s = time.monotonic() - started
        check(waited_s >= interval_s - 2, f"anchored {waited_s:.1f} s after start: at most one interval, not before")
        check(planned["treeSize"] == 3, f"the anchor covers the log: {planned}")
        s.daemon.stop()

        # Without the EVM follower, the Bitcoin follower alone decides: it is at the
        # node's tip, so the first anchor of a new ledger comes at once.
        s.datadir = os.path.join(tmp, "bitacora-btc-only")
        os.makedirs(s.datadir)
        s.start(extra=["-anchor=1", "-anchorinterval=3600"])
        s.signer.submit(s.api, 2)
        s.wait_anchor(1, "broadcast", timeout_s=20)
    finally:
        s.stop()


def test_a_wallet_the_node_unloaded_is_loaded_again(options, tmp):
    """bitcoind does not reload a wallet on restart unless load_on_startup was set; an
    unloaded wallet is what a restarted node shows. bitacorad loads it itself."""
    s = Setup(options, tmp)
    try:
        s.start()
        s.signer.submit(s.api, 2)
        s.node.rpc("unloadwallet", WALLET)
        check(WALLET not in s.node.rpc("listwallets"), "unloaded")
        result = s.api.call("admin_anchorNow")
        check(result["anchored"], f"anchored after loading the wallet: {result}")
        check(WALLET in s.node.rpc("listwallets"), "bitacorad loaded the wallet")
        check(f'Loaded wallet "{WALLET}" on bitcoind' in read_log(s.datadir), "the load is logged")
        s.mine(CONFIRMATIONS)
        s.wait_anchor(1, "final")
    finally:
        s.stop()


def test_no_funds_no_wallet_and_node_down_are_clear_errors_and_recover(options, tmp):
    s = Setup(options, tmp, fund=False)
    try:
        s.node.rpc("generatetoaddress", 1, s.node.rpc("getnewaddress", wallet=WALLET))
        s.start()
        s.signer.submit(s.api, 2)
        result = s.api.call("admin_anchorNow")
        check(not result["anchored"] and ("exceeds your balance" in result["message"] or
                                          "nsufficient" in result["message"]), f"no funds: {result}")
        check('bitacora_anchor_errors_total{reason="insufficient_funds"} ' in s.api.metrics() and
              'reason="insufficient_funds"} 0' not in s.api.metrics(), "counted by reason")
        s.signer.submit(s.api, 1)  # the ledger keeps growing
        s.node.rpc("generatetoaddress", 101, s.address)
        s.wait_synced()
        wait_for(lambda: s.anchor(1)["state"] == "broadcast", 30, "the anchor once funds arrived")

        s.daemon.stop()
        s.start(extra=["-btcwallet=nosuchwallet"])
        s.signer.submit(s.api, 1)
        s.mine(CONFIRMATIONS)  # anchor 1 (found in its block) goes final; a new one cannot be funded
        s.wait_anchor(1, "final")
        result = s.api.call("admin_anchorNow")
        check(not result["anchored"] and "wallet" in result["message"].lower(), f"wallet missing: {result}")

        s.node.stop()
        result = s.api.call("admin_anchorNow", timeout=30)
        check(not result["anchored"], f"node down: {result}")
        wait_for(lambda: s.btc()["state"] == "node_down", 30, "node_down in bitacora_status")
        check(s.daemon.proc.poll() is None, "bitacorad keeps running")
    finally:
        s.stop()


if __name__ == "__main__":
    if os.environ.get("BITCOIND"):
        print(f"bitcoind suites run against the real node {os.environ['BITCOIND']}", flush=True)
    else:
        print("BITCOIND is not set: running against the regtest double (BITCOIND=/path/to/bitcoind runs them against a real node)", flush=True)
    main([
        test_anchor_flow_to_final_with_proofs_checked_three_ways,
        test_a_reorg_that_drops_the_anchor_block_is_tracked_back,
        test_kill9_during_every_anchoring_step_neither_loses_nor_duplicates,
        test_fee_bump_when_the_anchor_lingers_in_the_mempool,
        test_an_anchor_block_pruned_before_it_was_read_is_re_anchored,
        test_zmq_announces_every_block,
        test_zmq_gaps_and_disconnects_resync_over_rpc,
        test_the_first_automatic_anchor_waits_for_the_followers,
        test_a_wallet_the_node_unloaded_is_loaded_again,
        test_no_funds_no_wallet_and_node_down_are_clear_errors_and_recover,
    ])
