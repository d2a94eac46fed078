"""A fault-injecting JSON-RPC proxy in front of anvil, on 127.0.0.1 at a free port.

Each fault has a probability; the random stream is seeded so that a failing run can be
repeated. Faults: HTTP 500, a stall past the client's timeout, a body cut short, HTTP 429
with Retry-After, eth_getLogs range-limit errors in the phrasing of real providers, a
block header whose hash is wrong, logs whose blockHash is wrong, and added latency.

A lying node, deterministically (not by chance): `forge_topic_from` forges topics[0] of the
first log of every block from that height on in eth_getLogs answers (to a value its block's
logsBloom does not hold, so that the bloom can tell), and `drop_log_from` drops that log."""

import http.server
import json
import random
import threading
import time
import urllib.request

from Cryptodome.Hash import keccak as _keccak


def keccak(data):
    h = _keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()

RANGE_ERRORS = [
    # (JSON-RPC code, message template): {limit} is the proxy's block limit.
    (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range "
             "and no limit on the response size, or you can request any block range with a cap of 10K logs "
             "in the response. Based on your parameters, this block range should work: [{from_hex}, {to_hex}]"),
    (-32005, "query returned more than 10000 results. Try with this block range [{from_hex}, {to_hex}]."),
    (-32000, "block range too large"),
    (-32000, "please limit the query to at most {limit_plus_1} blocks"),
    (-32602, "eth_getLogs is limited to a {limit} range"),
    (-32000, "backend response too large"),
    (-32600, "block range is too wide (maximum {limit})"),
    (-32000, "Max range: {limit_plus_1}"),
]


class FaultProxy:
    def __init__(self, upstream, seed=1, **faults):
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = {
            "http_500": 0.0, "stall": 0.0, "truncate": 0.0, "rate_limit": 0.0,
            "bad_header_hash": 0.0, "bad_log_hash": 0.0, "not_json": 0.0,
        }
        self.faults.update({k: v for k, v in faults.items() if k in self.faults})
        self.stall_s = faults.get("stall_s", 3.0)
        self.latency_s = faults.get("latency_s", 0.0)
        self.getlogs_blocks_max = faults.get("getlogs_blocks_max")  # range errors above this
        # Every enabled fault hits its first chance for sure, then at its rate: a run
        # always sees each of them, whatever the timing.
        self.force_first = faults.get("force_first", False)
        self.forge_topic_from = faults.get("forge_topic_from")
        self.drop_log_from = faults.get("drop_log_from")
        self.blooms = {}  # block hash -> logsBloom, fetched from upstream to forge outside it
        self.counts = {}
        self.requests = 0
        self.server = None
        self.thread = None

    # --- fault decisions (thread-safe) ---

    def _roll(self, name):
        with self.lock:
            hit = self.rng.random() < self.faults[name]
            if self.force_first and self.faults[name] > 0 and name not in self.counts:
                hit = True
            if hit:
                self.counts[name] = self.counts.get(name, 0) + 1
            return hit

    def _count(self, name):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _choice(self, items):
        with self.lock:
            return self.rng.choice(items)

    def set_faults(self, **faults):
        with self.lock:
            self.faults.update({k: v for k, v in faults.items() if k in self.faults})
            if "getlogs_blocks_max" in faults:
                self.getlogs_blocks_max = faults["getlogs_blocks_max"]
            if "latency_s" in faults:
                self.latency_s = faults["latency_s"]

    # --- request handling ---

    def _range_error(self, request):
        """A provider-style error if an eth_getLogs range is over the limit, else None."""
        if self.getlogs_blocks_max is None or request.get("method") != "eth_getLogs":
            return None
        params = request.get("params") or [{}]
        flt = params[0] if params and isinstance(params[0], dict) else {}
        if "fromBlock" not in flt or "toBlock" not in flt:
            return None
        start, end = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        if end - start + 1 <= self.getlogs_blocks_max:
            return None
        self._count("range_error")
        code, template = self._choice(RANGE_ERRORS)
        limit = self.getlogs_blocks_max
        message = template.format(from_hex=hex(start), to_hex=hex(start + limit - 1), limit=limit,
                                  limit_plus_1=limit + 1)
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": message}}

    def _bloom(self, block_hash):
        if block_hash not in self.blooms:
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByHash",
                               "params": [block_hash, False]}).encode()
            upstream = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(upstream, timeout=60) as answer:
                self.blooms[block_hash] = int(json.loads(answer.read())["result"]["logsBloom"], 16)
        return self.blooms[block_hash]

    def _outside_bloom(self, block_hash):
        """A topic whose three bloom bits are not all set in the block's logsBloom."""
        bloom = self._bloom(block_hash)
        for n in range(1000):
            topic = keccak(f"Forged{n}(uint256)".encode())
            bits = [((topic_hash[i] << 8) | topic_hash[i + 1]) & 2047 for topic_hash in [keccak(topic)]
                    for i in (0, 2, 4)]
            if not all(bloom >> b & 1 for b in bits):
                return "0x" + topic.hex()
        raise AssertionError("a saturated bloom")

    def _lie(self, logs):
        """The first log of each block at or above the configured heights: forged or dropped."""
        seen = set()
        out = []
        for log in logs:
            number = int(log["blockNumber"], 16)
            first = number not in seen
            seen.add(number)
            if first and self.drop_log_from is not None and number >= self.drop_log_from:
                self._count("drop_log")
                continue
            if first and self.forge_topic_from is not None and number >= self.forge_topic_from and log["topics"]:
                log["topics"][0] = self._outside_bloom(log["blockHash"])
                self._count("forge_topic")
            out.append(log)
        return out

    def _tamper(self, request, response):
        method = request.get("method")
        result = response.get("result") if isinstance(response, dict) else None
        if method == "eth_getLogs" and isinstance(result, list):
            result = response["result"] = self._lie(result)
        if method == "eth_getBlockByNumber" and isinstance(result, dict) and self._roll("bad_header_hash"):
            result["hash"] = "0x" + ("%064x" % self.rng.getrandbits(256))
        if method == "eth_getLogs" and isinstance(result, list) and result and self._roll("bad_log_hash"):
            victim = result[self.rng.randrange(len(result))]
            victim["blockHash"] = "0x" + ("%064x" % self.rng.getrandbits(256))
        return response

    def handle(self, body):
        """Returns (status, headers, body bytes, truncate)."""
        self.requests += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        if self._roll("stall"):
            time.sleep(self.stall_s)
        if self._roll("http_500"):
            return 500, {}, b"internal error", False
        if self._roll("rate_limit"):
            return 429, {"Retry-After": "1"}, b'{"error":"too many requests"}', False
        if self._roll("not_json"):
            return 200, {}, b"<html>bad gateway</html>", False
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        requests = request if isinstance(request, list) else [request]
        # Range errors are answered by the proxy, as the provider would.
        if not isinstance(request, list) and isinstance(request, dict):
            error = self._range_error(request)
            if error is not None:
                return 200, {}, json.dumps(error).encode(), False
        upstream = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(upstream, timeout=60) as answer:
            payload = json.loads(answer.read())
        if isinstance(request, list) and isinstance(payload, list):
            by_id = {r.get("id"): r for r in requests if isinstance(r, dict)}
            payload = [self._tamper(by_id.get(item.get("id"), {}), item) for item in payload]
        elif isinstance(request, dict):
            payload = self._tamper(request, payload)
        data = json.dumps(payload).encode()
        return 200, {}, data, self._roll("truncate")

    # --- server ---

    def start(self, port):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    status, headers, data, truncate = proxy.handle(body)
                except Exception as e:  # upstream down: what a broken provider does
                    status, headers, data, truncate = 502, {}, str(e).encode(), False
                try:
                    self._answer(status, headers, data, truncate)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a stall past its timeout)

            def _answer(self, status, headers, data, truncate):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if truncate:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
