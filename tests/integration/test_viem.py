"""viem, the TypeScript client of most EVM backends, against a real bitacorad (issue 13).

Each error of the API goes through viem's http transport (viem from contracts/node_modules,
run by node on viem_calls.mjs) and must reach the caller as what it is: the code and
message the daemon sent, in the error class viem gives that code (viem's generic
RpcRequestError for ours, never one of EIP-1474's meanings), and sent once: the daemon
counts the calls it served, so a retry shows. A 401 must carry a JSON-RPC error viem can
read. A 1000-call batch (viem's default batch size) is answered call by call within
-rpcmaxresponse, and a longer one gets geth's one-error answer, which viem hands to every
call of the batch."""

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, check, main, wait_for  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "viem_calls.mjs")
RESPONSE_MAX = 2_000_000  # -rpcmaxresponse: 1000 lists of every event do not fit, 1000 single events do
EVENTS = 40
OFFER = {"offerId": "o-1", "seller": "0x" + "ab" * 20, "amount": "250000000", "fiatCurrency": "EUR", "price": "92"}


def basic(secret):
    return "Basic " + base64.b64encode(secret.encode()).decode()


class Node:
    """A bare bitacorad (no chain followed) that takes off-chain events."""

    def __init__(self, options, tmp):
        self.options = options
        self.tmp = tmp
        self.cli = os.path.join(os.path.dirname(options.bitacorad), "bitacora-cli")
        self.key_file = os.path.join(tmp, "backend.key")
        first = self.sign("offer.posted", "k-0", OFFER)
        datadir = os.path.join(tmp, "node")
        os.makedirs(datadir)
        self.daemon = Daemon(options.bitacorad, datadir, [
            "-chain=regtest", "-rpcport=0", "-nodebuglogfile", f"-backendkey={first['submitter']}",
            f"-rpcmaxresponse={RESPONSE_MAX}"]).start()
        found = wait_for(lambda: re.search(r"RPC server on port (\d+)", self.daemon.stdout()), 30, "the RPC server")
        self.url = f"http://127.0.0.1:{found.group(1)}/"
        with open(os.path.join(datadir, "regtest", ".cookie")) as f:
            self.authorization = basic(f.read().strip())
        for i in range(EVENTS):
            event = first if i == 0 else self.sign("offer.posted", f"k-{i}", dict(OFFER, offerId=f"o-{i}"))
            check("result" in self.post({"jsonrpc": "2.0", "id": 1, "method": "ledger_submitEvent", "params": event}),
                  f"event {i} submitted")

    def sign(self, kind, key, payload, key_file=None):
        out = subprocess.run([self.cli, f"-signkey={key_file or self.key_file}", "signoffchain", kind, key,
                              json.dumps(payload)], capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, f"signoffchain: {out.stderr}")
        return json.loads(out.stdout)

    def post(self, body, authorization="cookie", want_status=200):
        """The daemon's own answer (parsed), without viem."""
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        if authorization:
            request.add_header("Authorization", self.authorization if authorization == "cookie" else authorization)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        check(status == want_status, f"HTTP {status}, not {want_status}: {text[:300]}")
        try:
            return json.loads(text)
        except ValueError:
            return None

    def metrics(self):
        with urllib.request.urlopen(self.url + "metrics", timeout=30) as answer:
            text = answer.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def viem(self, calls, authorization="cookie", batch=None):
        """Runs the calls through viem at once; returns (HTTP requests viem sent, outcomes,
        calls served by the daemon per method, HTTP responses by status)."""
        spec = os.path.join(self.tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"contracts": os.path.abspath(self.options.contracts), "url": self.url,
                       "authorization": self.authorization if authorization == "cookie" else authorization,
                       "batch": batch, "calls": [{"method": m, "params": p} for m, p in calls]}, f)
        before = self.metrics()
        out = subprocess.run(["node", SCRIPT, spec], capture_output=True, text=True, timeout=120)
        check(out.returncode == 0, f"node {SCRIPT}: {out.stderr[-2000:]}")
        after = self.metrics()
        answer = json.loads(out.stdout)

        def delta(prefix):
            return {name[len(prefix):].split('"')[0]: after[name] - before.get(name, 0)
                    for name in after if name.startswith(prefix) and after[name] != before.get(name, 0)}
        served = delta('bitacora_rpc_calls_total{method="')
        statuses = delta('bitacora_rpc_responses_total{status="')
        statuses["200"] = statuses.get("200", 0) - 1  # the first metrics read is counted after it answered
        return answer["fetches"], answer["outcomes"], served, {k: v for k, v in statuses.items() if v}

    def stop(self):
        self.daemon.stop()


def test_every_error_reaches_viem_as_what_it_is_and_is_not_retried(options, tmp):
    node = Node(options, tmp)
    try:
        conflicting = node.sign("offer.posted", "k-1", dict(OFFER, price="93"))
        stranger = node.sign("offer.posted", "k-s", OFFER, key_file=os.path.join(tmp, "stranger.key"))
        cases = [
            # (what, method, params, authorization, the class viem must throw, HTTP status)
            ("not found", "ledger_getEvent", [10 ** 6], "cookie", "ResourceNotFoundRpcError", 200),
            ("invalid params", "ledger_getEvent", ["x"], "cookie", "InvalidParamsRpcError", 200),
            ("method not found", "nope_nothing", [], "cookie", "MethodNotFoundRpcError", 200),
            ("params over 64 KiB", "ledger_getEvent", ["9" * 70_000], "cookie", "RpcRequestError", 200),
            ("feature off", "admin_anchorNow", [], "cookie", "RpcRequestError", 200),
            ("idempotency key reused", "ledger_submitEvent", conflicting, "cookie", "RpcRequestError", 200),
            ("submitter not configured", "ledger_submitEvent", stranger, "cookie", "RpcRequestError", 200),
            ("no credentials", "bitacora_status", [], None, "RpcRequestError", 401),
            ("wrong credentials", "bitacora_status", [], basic("__cookie__:wrong"), "RpcRequestError", 401),
        ]
        seen_codes = set()
        problems = []  # all of them, not only the first: a run before the fix shows each
        for what, method, params, authorization, viem_class, status in cases:
            raw = node.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, authorization, status)
            raw_error = raw.get("error", {}) if isinstance(raw, dict) else {}
            code, message = raw_error.get("code"), raw_error.get("message")
            if code is None:
                problems.append(f"{what}: the daemon's answer is no JSON-RPC error: {raw}")
            fetches, outcomes, served, statuses = node.viem([(method, params)], authorization)
            error = outcomes[0].get("error")
            if error is None:
                problems.append(f"{what}: viem got a result: {outcomes[0]}")
                continue
            print(f"  {what}: {code} {message!r} -> viem {error['name']} (code {error['code']}, HTTP status "
                  f"{error['status']}), {fetches} request(s)", flush=True)
            if error["name"] != viem_class:
                problems.append(f"{what}: viem threw {error['name']}, not {viem_class}")
            if error["code"] != code or error["details"] != message:
                problems.append(f"{what}: viem lost the code or the message: {error['code']} {error['details']!r}")
            if "Unexpected end of JSON input" in error["message"]:
                problems.append(f"{what}: {error['message']}")
            if fetches != 1:
                problems.append(f"{what}: viem sent {fetches} requests (retried)")
            if status == 401:
                if error["status"] != 401 or "id" not in raw or raw["id"] is not None or statuses != {"401": 1} or served:
                    problems.append(f"{what}: {error['status']} {raw}; the daemon saw {statuses} {served}")
            else:
                counted = method if method != "nope_nothing" else "(unknown)"  # unknown names are counted together
                if served != {counted: 1} or statuses != {"200": 1}:
                    problems.append(f"{what}: the daemon served {served} {statuses}")
            if code is not None:
                seen_codes.add(code)
        if seen_codes != {-32001, -32602, -32601, -32041, -32042, -32043, -32040, -32044}:
            problems.append(f"codes seen: {sorted(seen_codes)}")
        check(not problems, "\n".join(problems))
    finally:
        node.stop()


def test_viem_batches_of_1000_are_answered_and_a_longer_one_as_geth(options, tmp):
    node = Node(options, tmp)
    try:
        # viem's default batch: up to 1000 calls in one request.
        calls = [("ledger_getEvent", [i % EVENTS]) for i in range(1000)]
        fetches, outcomes, served, statuses = node.viem(calls, batch={"batchSize": 1000})
        check(fetches == 1 and served == {"ledger_getEvent": 1000} and statuses == {"200": 1},
              f"one request of 1000 calls: {fetches} sent, {served} {statuses} served")
        bad = [o for o in outcomes if not o["ok"]]
        check(not bad, f"{len(bad)} of 1000 calls failed: {bad[:2]}")
        check([o["result"]["index"] for o in outcomes] == [i % EVENTS for i in range(1000)], "each call its answer")

        # 1001 calls: geth's answer, one -32600 "batch too large", which viem gives to each call.
        calls = [("ledger_getEvent", [i % EVENTS]) for i in range(1001)]
        fetches, outcomes, served, statuses = node.viem(calls, batch={"batchSize": 1001})
        check(fetches == 1 and not served and statuses == {"200": 1},
              f"a batch over the limit runs nothing: {fetches} sent, {served} {statuses}")
        errors = {(o["error"]["name"], o["error"]["code"], o["error"]["details"]) for o in outcomes if not o["ok"]}
        check(len(outcomes) == 1001 and all(not o["ok"] for o in outcomes)
              and errors == {("InvalidRequestRpcError", -32600, "batch too large")},
              f"every call gets geth's error: {errors}")

        # 1000 lists of every event do not fit in -rpcmaxresponse: lists stop early, the rest
        # are refused with -32041 each, which viem neither misreports nor retries.
        calls = [("ledger_getEvents", []) for _ in range(1000)]
        raw = node.post([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)])
        raw_bytes = len(json.dumps(raw))
        check(raw_bytes < RESPONSE_MAX + 1000 * 300, f"the answer stays near -rpcmaxresponse: {raw_bytes} bytes")
        fetches, outcomes, served, statuses = node.viem(calls, batch={"batchSize": 1000})
        answered = sum(o["ok"] for o in outcomes)
        refused = {(o["error"]["name"], o["error"]["code"]) for o in outcomes if not o["ok"]}
        print(f"  1000 lists: {raw_bytes} bytes, {answered} answered, the rest refused as {refused}", flush=True)
        check(fetches == 1 and served == {"ledger_getEvents": 1000} and statuses == {"200": 1},
              f"no retry of the refused calls: {fetches} sent, {served} {statuses} served")
        check(0 < answered < 1000 and all(o["ok"] for o in outcomes[:answered]), "answers until the budget ends")
        check(refused == {("RpcRequestError", -32041)}, f"the rest get the limit error: {refused}")
    finally:
        node.stop()


if __name__ == "__main__":
    main([
        test_every_error_reaches_viem_as_what_it_is_and_is_not_retried,
        test_viem_batches_of_1000_are_answered_and_a_longer_one_as_geth,
    ])
