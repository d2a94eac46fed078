"""A scripted hostile JSON-RPC node for the integration suites: a small threaded HTTP
server on 127.0.0.1 at a free port that forwards every call to an honest upstream (anvil,
or the bitcoind double) byte for byte, except the methods a rule names, which it answers
with one of these behaviours:

    deep          an envelope nested DEEP levels: the id, the error, error.data (arrays and
                  objects), in turn, one per answer; a batch gets a deep array
    deep_result   a `result` nested DEEP levels (the id is the request's)
    huge          Content-Length HUGE_BYTES, streamed 1 MiB at a time (never buffered here)
    endless       a chunked body that never ends (bounded here by ENDLESS_MAX_S and by the
                  client hanging up)
    gzip_bomb     about a MiB of gzip (Content-Encoding: gzip) that inflates to GZIP_BOMB_BYTES
    hang          the headers and the first 64 KiB of a 10 MB body, then nothing until
                  release() (or HANG_MAX_S)

Rules match a method alone or inside a batch. honest() drops every rule: from then on all
is forwarded. Only the standard library."""

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
import zlib

DEEP = 200_000
HUGE_BYTES = 600_000_000
GZIP_BOMB_BYTES = 1_100 << 20
ENDLESS_MAX_S = 90
HANG_MAX_S = 60
MIB = 1 << 20

_FILLER_ITEM = (b'{"address":"0x5fbdb2315678afecb367f032d93f642f64180aa3","topics":["0x' + b"ab" * 32 +
                b'"],"data":"0x' + b"00" * 64 + b'","blockNumber":"0x1","logIndex":"0x0","removed":false},')
FILLER = (_FILLER_ITEM * (MIB // len(_FILLER_ITEM) + 1))[:MIB]

_bomb_lock = threading.Lock()
_bomb = None


def gzip_bomb():
    """gzip of a JSON-RPC prefix and GZIP_BOMB_BYTES of JSON whitespace; made once."""
    global _bomb
    with _bomb_lock:
        if _bomb is None:
            z = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
            parts = [z.compress(b'{"jsonrpc":"2.0","id":1,"result":[')]
            spaces = b" " * (16 * MIB)
            for _ in range(GZIP_BOMB_BYTES // len(spaces)):
                parts.append(z.compress(spaces))
            parts.append(z.compress(b"]}"))
            parts.append(z.flush())
            _bomb = b"".join(parts)
        return _bomb


def _deep_array(depth):
    return b"[" * depth + b"]" * depth


def _deep_object(depth):
    return b'{"x":' * depth + b"1" + b"}" * depth


def _id_bytes(request):
    return json.dumps(request.get("id") if isinstance(request, dict) else None).encode()


def deep_envelope(request, variant):
    """The four deep envelopes of the issue, by variant number."""
    rid = _id_bytes(request)
    variant %= 4
    if variant == 0:
        return b'{"jsonrpc":"2.0","id":' + _deep_array(DEEP) + b',"result":"0x7a69"}'
    if variant == 1:
        return b'{"jsonrpc":"2.0","id":' + rid + b',"error":' + _deep_array(DEEP) + b"}"
    if variant == 2:
        return (b'{"jsonrpc":"2.0","id":' + rid + b',"error":{"code":-32000,"message":"deep","data":' +
                _deep_array(DEEP) + b"}}")
    return (b'{"jsonrpc":"2.0","id":' + rid + b',"error":{"code":-32000,"message":"deep","data":' +
            _deep_object(DEEP) + b"}}")


class HostileNode:
    def __init__(self, upstream, auth_passthrough=False):
        self.upstream = upstream.rstrip("/")
        self.auth_passthrough = auth_passthrough
        self.lock = threading.Lock()
        self.rules = {}        # method -> behaviour
        self.counts = {}       # behaviour -> hostile answers begun
        self.sent = {}         # behaviour -> body bytes written before the client hung up or the body ended
        self.hanging = 0       # transfers held by `hang` right now
        self.forwarded = 0
        self._release = threading.Event()
        self._closing = threading.Event()
        self.server = None

    # --- control ---

    def set(self, rules):
        with self.lock:
            self.rules = dict(rules)
            self._release.clear()

    def honest(self):
        with self.lock:
            self.rules = {}
        self._release.set()

    def release(self):
        self._release.set()

    def count(self, behaviour=None):
        with self.lock:
            if behaviour is None:
                return sum(self.counts.values())
            return self.counts.get(behaviour, 0)

    def sent_mib(self):
        with self.lock:
            return sum(self.sent.values()) / MIB

    def reset_counts(self):
        with self.lock:
            self.counts = {}
            self.sent = {}

    def _note(self, behaviour, sent=None):
        with self.lock:
            if sent is None:
                self.counts[behaviour] = self.counts.get(behaviour, 0) + 1
            else:
                self.sent[behaviour] = self.sent.get(behaviour, 0) + sent

    def _rule_for(self, request):
        items = request if isinstance(request, list) else [request]
        with self.lock:
            for item in items:
                if isinstance(item, dict) and item.get("method") in self.rules:
                    return self.rules[item["method"]]
        return None

    # --- server ---

    def start(self):
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 120

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    request = json.loads(body)
                except ValueError:
                    request = None
                behaviour = node._rule_for(request)
                try:
                    if behaviour is None:
                        self._forward(body)
                    else:
                        node._note(behaviour)
                        getattr(self, "_" + behaviour)(request)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
                    self.close_connection = True

            def _send(self, status, data, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body):
                headers = {"Content-Type": "application/json"}
                if node.auth_passthrough and self.headers.get("Authorization"):
                    headers["Authorization"] = self.headers["Authorization"]
                upstream = urllib.request.Request(node.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(upstream, timeout=60) as answer:
                        status, data = answer.status, answer.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                except OSError as e:
                    status, data = 502, str(e).encode()
                with node.lock:
                    node.forwarded += 1
                self._send(status, data)

            def _stream(self, behaviour, chunks, chunked):
                """Writes chunks until they end or the client hangs up; counts the bytes."""
                sent = 0
                try:
                    for chunk in chunks:
                        if node._closing.is_set():
                            break
                        if chunked:
                            self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                        else:
                            self.wfile.write(chunk)
                        sent += len(chunk)
                    if chunked and not node._closing.is_set():
                        self.wfile.write(b"0\r\n\r\n")
                finally:
                    node._note(behaviour, sent)
                    self.close_connection = True

            def _deep(self, request):
                if isinstance(request, list):
                    data = _deep_array(DEEP)
                else:
                    data = deep_envelope(request, node.count("deep") - 1)
                node._note("deep", len(data))
                self._send(200, data)

            def _deep_result(self, request):
                data = b'{"jsonrpc":"2.0","id":' + _id_bytes(request) + b',"result":' + _deep_array(DEEP) + b"}"
                node._note("deep_result", len(data))
                self._send(200, data)

            def _huge(self, request):
                prefix = b'{"jsonrpc":"2.0","id":' + _id_bytes(request) + b',"result":['
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(HUGE_BYTES))
                self.end_headers()

                def chunks():
                    yield prefix
                    left = HUGE_BYTES - len(prefix)
                    while left > 0:
                        yield FILLER[:min(left, len(FILLER))]
                        left -= len(FILLER)
                self._stream("huge", chunks(), chunked=False)

            def _endless(self, request):
                prefix = b'{"jsonrpc":"2.0","id":' + _id_bytes(request) + b',"result":['
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunks():
                    yield prefix
                    deadline = time.monotonic() + ENDLESS_MAX_S
                    while time.monotonic() < deadline:
                        yield FILLER
                self._stream("endless", chunks(), chunked=True)

            def _gzip_bomb(self, request):
                bomb = gzip_bomb()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
                self.end_headers()
                self._stream("gzip_bomb", (bomb[i:i + MIB] for i in range(0, len(bomb), MIB)), chunked=False)

            def _hang(self, request):
                prefix = b'{"jsonrpc":"2.0","id":' + _id_bytes(request) + b',"result":['
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                self.wfile.write(prefix + FILLER[:64 << 10])
                node._note("hang", len(prefix) + (64 << 10))
                with node.lock:
                    node.hanging += 1
                try:
                    deadline = time.monotonic() + HANG_MAX_S
                    while time.monotonic() < deadline and not node._release.is_set() and not node._closing.is_set():
                        node._release.wait(0.1)
                finally:
                    with node.lock:
                        node.hanging -= 1
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self._closing.set()
        self._release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
