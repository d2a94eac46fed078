"""Health and metrics that tell the truth (issue 13): a real bitacorad following a real
anvil through a forwarder the test can cut (connections refused: the node unreachable)
and through hostile_node.py (a node whose answers hang), and /metrics read by Prometheus'
own checker.

- Unreachable: GET /health turns 200 "degraded" then 503 "unavailable" naming the EVM
  source (it answered 200 {"status":"ready"} for as long as the node was down), the
  per-endpoint upstream error counter grows while it is down (it stayed 0), and the
  health returns to ready once the node is back.
- Hanging: the hung request is logged while it still hangs (the node holds it open at
  that moment), counted in bitacora_upstream_hung_requests_total, and /health names the
  EVM source until the node answers again.
- /metrics passes `promtool check metrics` (Debian's prometheus package; no _ms_p99
  names), and each new family is present with a value that agrees with bitacora_status:
  ledger size, root age, source state, unanchored events, last reconciliation time,
  ZMQ counters, build info; a daemon that follows nothing (serving its ledger read-only)
  exports the ledger metrics too.
- Bitcoin: after a final anchor, the unanchored events and the anchor's age; promtool on
  a /metrics with both sources; /health 503 naming btc once bitcoind (the double, or
  BITCOIND) is stopped, its transport errors counted."""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import Platform, read_log, start_follower, wait_synced_at  # noqa: E402
from harness import Daemon, TestFailure, check, free_port, main, wait_for  # noqa: E402
from hostile_node import HostileNode  # noqa: E402

HANG_S = 2    # -upstreamhang
STALL_S = 6   # -upstreamstall
HEALTH_ARGS = [f"-upstreamhang={HANG_S}", f"-upstreamstall={STALL_S}"]
EVM_METHODS = ["eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs", "eth_chainId", "eth_call", "eth_getCode",
               "eth_getBlockReceipts"]


class Forwarder:
    """A TCP forwarder to anvil on a fixed port. down() closes the listener and every
    connection through it, so that the daemon's connects are refused (a node that is
    unreachable, not one that answers errors); up() listens on the same port again."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def up(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self):
        listener, self.listener = self.listener, None
        if listener:
            # shutdown() first: a close() alone leaves the socket listening while the
            # accept() thread still holds it.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- the daemon's HTTP surface -------------------------------------------------------------

def rpc_port(datadir, daemon, log_offset=0):
    def port():
        if daemon.proc.poll() is not None:
            raise TestFailure(f"bitacorad exited with {daemon.proc.returncode}: {read_log(datadir)[-3000:]}")
        return re.search(r"RPC server on port (\d+)", read_log(datadir)[log_offset:])
    return int(wait_for(port, 30, "the RPC server").group(1))


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def health(port):
    status, body = get(port, "/health")
    return status, json.loads(body)


def status_call(port, datadir):
    with open(os.path.join(datadir, "regtest", ".cookie")) as f:
        cookie = f.read().strip()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bitacora_status", "params": []}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["result"]


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(port):
    """{(name, frozenset(labels)): value} of every sample, and the raw text."""
    status, text = get(port, "/metrics")
    check(status == 200, f"/metrics answered {status}")
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m is not None, f"unparsable metrics line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, text


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in samples, f"{name}{labels} not in /metrics")
    return samples[key]


def total(samples, name, **labels):
    """The sum over every series of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def evm_transport_errors(port):
    samples, _ = metrics(port)
    return total(samples, "bitacora_upstream_errors_total", source="evm", kind="transport")


def wait_health(port, predicate, timeout_s, what):
    seen = []

    def probe():
        status, body = health(port)
        seen.append((round(time.monotonic(), 1), status, body.get("status")))
        return (status, body) if predicate(status, body) else None
    try:
        return wait_for(probe, timeout_s, what)
    except TestFailure as e:
        raise TestFailure(f"{e}; /health answers seen (last 5): {seen[-5:]}")


def names_evm(body, level):
    return (body.get("status") == level and body.get("failing") == ["evm"]
            and not body["sources"]["evm"]["healthy"] and body["sources"]["evm"]["error"] != "")


# --- tests -------------------------------------------------------------------------------

def test_an_unreachable_evm_node_is_named_and_counted(options, tmp):
    platform = Platform(options, tmp)
    forwarder = Forwarder(platform.anvil.port).up()
    datadir = os.path.join(tmp, "node")
    daemon = start_follower(options, platform, datadir, url=forwarder.url, extra=HEALTH_ARGS)
    try:
        platform.waves(2)
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        port = rpc_port(datadir, daemon)
        status, body = wait_health(port, lambda s, b: s == 200 and b["status"] == "ready", 30, "/health ready")
        check(body["sources"]["evm"]["healthy"] and body["sources"]["evm"]["state"] == "following", f"{body}")
        before = evm_transport_errors(port)

        forwarder.down()
        cut = time.monotonic()
        # Failing at once (the next poll is refused), but served: 200 degraded.
        status, body = wait_health(port, lambda s, b: b["status"] != "ready", 10, "/health to leave ready")
        check(names_evm(body, "degraded") and status == 200 or names_evm(body, "unavailable") and status == 503,
              f"/health while the node is down: {status} {body}")
        first = f"{status} {body['status']}"
        counted = wait_for(lambda: evm_transport_errors(port) > before and evm_transport_errors(port), 10,
                           "the transport error counter to grow while the node is down")
        # Stalled past -upstreamstall: 503, naming the EVM source and why.
        status, body = wait_health(port, lambda s, b: s == 503, STALL_S + 15, "/health 503")
        waited = time.monotonic() - cut
        check(names_evm(body, "unavailable") and body["sources"]["evm"]["upstream"] == "stalled", f"{body}")
        check("transport error" in body["sources"]["evm"]["error"], f"{body}")
        check(body["sources"]["evm"]["failingSeconds"] >= STALL_S, f"{body}")
        check(waited >= STALL_S - 1, f"503 after {waited:.1f} s, before -upstreamstall={STALL_S}")
        later = evm_transport_errors(port)
        check(later > counted, f"errors stopped being counted while the node is down ({counted} then {later})")
        samples, _ = metrics(port)
        check(value(samples, "bitacora_upstream_failing_seconds", source="evm") >= STALL_S, "failing seconds")
        check(value(samples, "bitacora_upstream_last_answer_age_seconds", source="evm") >= STALL_S, "last answer age")
        check(value(samples, "bitacora_upstream_requests_total", source="evm", endpoint=forwarder.url) >= later,
              "requests counted per endpoint")
        print(f"UNREACHABLE: /health {first} at first, 503 after {waited:.1f} s; transport errors {before:.0f} -> {counted:.0f} "
              f"-> {later:.0f}", flush=True)

        forwarder.up()
        status, body = wait_health(port, lambda s, b: s == 200 and b["status"] == "ready", 60, "/health ready again")
        check(body["failing"] == [], f"{body}")
    finally:
        daemon.stop()
        forwarder.down()
        platform.stop()


def test_a_node_whose_head_stands_still_degrades_its_source(options, tmp):
    # anvil makes blocks only when told: an answering node whose latest block stays put, as
    # a node cut off from its peers would look. With -evmheadstall=3 that is noticed.
    platform = Platform(options, tmp)
    datadir = os.path.join(tmp, "node")
    daemon = start_follower(options, platform, datadir, extra=HEALTH_ARGS + ["-evmheadstall=3"])
    try:
        platform.waves(1)
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        port = rpc_port(datadir, daemon)
        status, body = wait_health(port, lambda s, b: b["status"] == "degraded", 15, "/health degraded by a still head")
        check(status == 200 and names_evm(body, "degraded"), f"{status} {body}")
        check("head has not advanced" in body["sources"]["evm"]["error"], f"{body}")
        check(body["sources"]["evm"]["headAgeSeconds"] >= 3, f"{body}")
        samples, _ = metrics(port)
        check(value(samples, "bitacora_source_head_age_seconds", source="evm") >= 3, "head age in /metrics")
        platform.mine(1)
        status, body = wait_health(port, lambda s, b: b["status"] == "ready", 15, "/health ready after a new block")
        check(body["sources"]["evm"]["headAgeSeconds"] < 3, f"{body}")
        print(f"STILL HEAD: degraded after 3 s without a new block, ready again after one: {body['sources']['evm']}",
              flush=True)
    finally:
        daemon.stop()
        platform.stop()


def test_a_hanging_evm_node_is_logged_while_it_hangs(options, tmp):
    platform = Platform(options, tmp)
    node = HostileNode(platform.anvil.url).start()
    datadir = os.path.join(tmp, "node")
    daemon = start_follower(options, platform, datadir, url=node.url, extra=HEALTH_ARGS)
    try:
        platform.waves(2)
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        port = rpc_port(datadir, daemon)
        wait_health(port, lambda s, b: s == 200 and b["status"] == "ready", 30, "/health ready")
        samples, _ = metrics(port)
        hung_before = total(samples, "bitacora_upstream_hung_requests_total", source="evm")

        node.set({method: "hang" for method in EVM_METHODS})
        platform.mine(1)
        wait_for(lambda: node.hanging > 0, 30, "a request held by the hanging node")
        log_offset = len(read_log(datadir))
        # Logged once the request is older than -upstreamhang, while the node still holds it.
        line = wait_for(lambda: re.search(r"EVM node \S+: (.+?) has had no complete answer for \d+ s; still waiting",
                                          read_log(datadir)[log_offset:]), HANG_S + 10, "the hung request's log line")
        check(node.hanging > 0, "the hung request was logged only after it ended")
        samples, _ = metrics(port)
        check(total(samples, "bitacora_upstream_hung_requests_total", source="evm") > hung_before, "hung counter")
        check(value(samples, "bitacora_upstream_in_flight_requests", source="evm") >= 1, "in-flight gauge")
        status, body = wait_health(port, lambda s, b: s == 503, STALL_S + 15, "/health 503 while the node hangs")
        check(names_evm(body, "unavailable") and "has had no answer" in body["sources"]["evm"]["error"], f"{body}")
        check(node.hanging > 0, "the node no longer holds a request")
        print(f"HANGING: '{line.group(0)}' logged while {node.hanging} request(s) hung; /health {status} "
              f"{body['sources']['evm']['error']}", flush=True)

        node.honest()
        wait_health(port, lambda s, b: s == 200 and b["status"] == "ready", 60, "/health ready once the node answers")
        check(re.search(r"EVM node \S+: .+? ended after", read_log(datadir)[log_offset:]), "no line when the hang ended")
    finally:
        daemon.stop()
        node.stop()
        platform.stop()


def promtool_check(text):
    promtool = shutil.which("promtool")
    check(promtool is not None, "promtool not found: scripts/setup.sh installs Debian's prometheus package")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    check(out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(),
          f"promtool check metrics (exit {out.returncode}): {out.stdout}{out.stderr}")


def test_metrics_pass_promtool_and_agree_with_status(options, tmp):
    platform = Platform(options, tmp)
    datadir = os.path.join(tmp, "node")
    zmq_endpoint = f"tcp://127.0.0.1:{free_port()}"
    started = time.time()
    daemon = start_follower(options, platform, datadir, extra=[f"-zmqpubevent={zmq_endpoint}"])
    try:
        platform.waves(3)
        platform.mine(70)
        wait_synced_at(datadir, platform, daemon=daemon)
        port = rpc_port(datadir, daemon)
        # The first reconciliation happens once the follower is idle.
        wait_for(lambda: metrics(port)[0].get(("bitacora_reconciliation_ok", frozenset({("source", "evm")}))) == 1,
                 60, "a reconciliation")
        status = status_call(port, datadir)
        samples, text = metrics(port)
        promtool_check(text)
        check(status_call(port, datadir)["ledger"]["size"] == status["ledger"]["size"], "the ledger grew meanwhile")
        size = status["ledger"]["size"]
        check(size > 0, "nothing was followed")
        check(value(samples, "bitacora_ledger_size") == size, f"bitacora_ledger_size != status size {size}")
        check(value(samples, "bitacora_ledger_unanchored_events") == size, "unanchored events (no anchor yet)")
        age = value(samples, "bitacora_ledger_root_age_seconds")
        check(0 <= age <= time.time() - started, f"root age {age}")
        version = re.search(r"version v(\S+)", subprocess.run([options.bitacorad, "-version"], capture_output=True,
                                                      text=True).stdout).group(1)
        check(value(samples, "bitacora_build_info", version=version) == 1, f"build info for {version}")
        check(value(samples, "bitacora_source_state", source="evm", state="following") == 1, "evm state")
        check(total(samples, "bitacora_source_state", source="evm") == 1, "one state at a time")
        evm_status = status["sources"]["evm"]
        check(evm_status["state"] == "following", f"{evm_status['state']}")
        reconciled = value(samples, "bitacora_reconciliation_last_timestamp_seconds", source="evm")
        check(int(started) <= reconciled <= time.time(), f"last reconciliation time {reconciled}, started {started}")
        check(value(samples, "bitacora_sync_final_block", source="evm") == evm_status["finalBlock"], "final block")
        check(value(samples, "bitacora_sync_lag_blocks", source="evm") == 0, "lag once synced")
        # Every final event is published, and pending ones (announced before they are final) too.
        published = value(samples, "bitacora_zmq_published_total")
        check(published >= size, f"{published} ZMQ messages published for {size} final events")
        check(value(samples, "bitacora_zmq_dropped_total") == 0, "ZMQ drops")
        endpoint = platform.anvil.url
        requests = value(samples, "bitacora_upstream_requests_total", source="evm", endpoint=endpoint)
        check(requests > 0, "upstream requests")
        check(value(samples, "bitacora_upstream_request_duration_seconds_count", source="evm", endpoint=endpoint)
              == requests, "the duration histogram counts every request")
        check(value(samples, "bitacora_upstream_request_duration_seconds_bucket", source="evm", endpoint=endpoint,
                    le="+Inf") == requests, "+Inf bucket")
        check(total(samples, "bitacora_upstream_errors_total", source="evm") == 0, "errors against an honest node")
        check(value(samples, "bitacora_upstream_failing_seconds", source="evm") == 0, "not failing")
        check(value(samples, "bitacora_block_visible_latency_seconds_count", source="evm") > 0, "latency summary")
        check("_ms_p99" not in text, "an _ms_p99 name is left")
    finally:
        daemon.stop()
        platform.stop()

    # The same ledger served by a daemon that follows nothing: the ledger metrics remain.
    log_offset = len(read_log(datadir))
    reader = Daemon(options.bitacorad, datadir, ["-chain=regtest", "-printtoconsole=0", "-rpcport=0"]).start()
    try:
        port = rpc_port(datadir, reader, log_offset)
        samples, text = metrics(port)
        promtool_check(text)
        check(value(samples, "bitacora_ledger_size") == size, "ledger size without followers")
        check(value(samples, "bitacora_ledger_unanchored_events") == size, "unanchored events without followers")
        check(value(samples, "bitacora_ledger_root_age_seconds") >= 0, "root age without followers")
        check(value(samples, "bitacora_ledger_health", state="ok") == 1, "ledger health without followers")
        status, body = health(port)
        check(status == 200 and body["status"] == "ready" and body["sources"] == {}, f"/health: {status} {body}")
    finally:
        reader.stop()


def test_bitcoin_side_metrics_and_a_node_that_goes_down(options, tmp):
    """The anchor metrics against a final anchor, promtool with both label sets of the
    shared families, and /health naming btc once bitcoind (double or BITCOIND) is gone."""
    from test_btc_anchor import CONFIRMATIONS, Setup  # noqa: E402
    s = Setup(options, tmp)
    try:
        s.start(extra=HEALTH_ARGS)
        s.signer.submit(s.api, 3)
        result = s.api.call("admin_anchorNow")
        check(result["anchored"], f"admin_anchorNow: {result}")
        s.mine(CONFIRMATIONS)
        anchor = s.wait_anchor(result["anchor"]["id"], "final")
        port = s.api.port
        status = s.api.call("bitacora_status")
        samples, text = metrics(port)
        promtool_check(text)
        size = status["ledger"]["size"]
        check(value(samples, "bitacora_ledger_size") == size, "ledger size")
        check(value(samples, "bitacora_ledger_unanchored_events") == size - anchor["treeSize"],
              f"unanchored events: size {size}, final anchor of {anchor['treeSize']}")
        age = value(samples, "bitacora_anchor_last_final_age_seconds")
        check(0 <= age < 120, f"last final anchor age {age}")
        check(value(samples, "bitacora_source_state", source="btc", state="synced") == 1, "btc state")
        check(value(samples, "bitacora_btc_tip_height", source="btc") == status["sources"]["btc"]["tipHeight"], "tip")
        check(total(samples, "bitacora_upstream_requests_total", source="btc") > 0, "bitcoind requests counted")
        check(value(samples, "bitacora_btc_zmq_dropped_total", source="btc") == 0, "ZMQ drops")
        wait_health(port, lambda st, b: st == 200 and b["status"] == "ready" and b["sources"]["btc"]["healthy"], 30,
                    "/health ready")
        before = total(samples, "bitacora_upstream_errors_total", source="btc", kind="transport")

        s.node.stop()
        st, body = wait_health(port, lambda st, b: st == 503, STALL_S + 30, "/health 503 with bitcoind down")
        check(body["failing"] == ["btc"] and not body["sources"]["btc"]["healthy"], f"{body}")
        samples, _ = metrics(port)
        after = total(samples, "bitacora_upstream_errors_total", source="btc", kind="transport")
        check(after > before, f"bitcoind transport errors {before} -> {after}")
        print(f"BTC DOWN: /health {st} {body['sources']['btc']}", flush=True)
    finally:
        s.stop()


if __name__ == "__main__":
    main([test_an_unreachable_evm_node_is_named_and_counted, test_a_node_whose_head_stands_still_degrades_its_source,
          test_a_hanging_evm_node_is_logged_while_it_hangs,
          test_metrics_pass_promtool_and_agree_with_status, test_bitcoin_side_metrics_and_a_node_that_goes_down])
