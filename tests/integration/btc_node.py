"""A bitcoind for the integration suites: the real one when the environment variable
BITCOIND names a bitcoind binary, the regtest double (btc_double.py) otherwise. Both are
started with the same flags (regtest, a temporary datadir, free ports on 127.0.0.1, manual
pruning with -fastprune, -fallbackfee, ZMQ on every topic on one endpoint) and stopped
whatever happens:

    with BtcNode().start(tmpdir) as node:
        node.rpc("createwallet", "w")
        address = node.rpc("getnewaddress", wallet="w")
        node.mine(101, address)

Only the standard library."""

import atexit
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "btc_double.py")
ZMQ_TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")


class RpcError(Exception):
    """A JSON-RPC error answer (code, message), or an HTTP failure (code None, http_status set)."""

    def __init__(self, code, message, http_status=None):
        super().__init__(f"{code}: {message}" if code is not None else message)
        self.code = code
        self.message = message
        self.http_status = http_status


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _double_python():
    explicit = os.environ.get("BTC_DOUBLE_PYTHON")
    if explicit:
        return explicit
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class BtcNode:
    """A regtest bitcoind (real or double) owned by one test."""

    def __init__(self, binary=None, extra_args=()):
        self.binary = binary if binary is not None else (os.environ.get("BITCOIND") or None)
        self.is_real = bool(self.binary)
        self.extra_args = list(extra_args)
        self.proc = None
        self.datadir = None
        self.rpc_port = None
        self.zmq_port = None
        self._auth = None
        self._next_id = 0
        self._mine_address = None
        self._atexit = False

    # properties the suites use

    @property
    def rpc_url(self):
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def zmq_endpoint(self):
        return f"tcp://127.0.0.1:{self.zmq_port}"

    @property
    def cookie_path(self):
        return os.path.join(self.datadir, "regtest", ".cookie")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def auth(self):
        """user:password for HTTP Basic auth (the cookie's content)."""
        if self._auth is None:
            with open(self.cookie_path) as f:
                self._auth = f.read().strip()
        return self._auth

    # life cycle

    def command(self, rpc_port, zmq_port, extra_args=()):
        zmq = f"tcp://127.0.0.1:{zmq_port}"
        args = ["-regtest", f"-datadir={self.datadir}", f"-rpcport={rpc_port}", "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1", "-listen=0", "-dnsseed=0", "-prune=1", "-fastprune", "-fallbackfee=0.0002",
                "-printtoconsole=0"] + [f"-zmqpub{t}={zmq}" for t in ZMQ_TOPICS] + self.extra_args + list(extra_args)
        if self.is_real:
            return [self.binary] + args
        return [_double_python(), DOUBLE] + args

    def start(self, tmpdir, extra_args=(), timeout_s=60):
        """Starts the node with its datadir in tmpdir (created if needed); returns self."""
        self.datadir = os.path.abspath(tmpdir)
        os.makedirs(self.datadir, exist_ok=True)
        if not self._atexit:   # a last resort if the caller forgets stop() and the interpreter exits
            atexit.register(self.stop)
            self._atexit = True
        last_error = None
        for _ in range(5):
            self.rpc_port, self.zmq_port = _free_port(), _free_port()
            while self.zmq_port == self.rpc_port:
                self.zmq_port = _free_port()
            self._auth = None
            stdout = open(os.path.join(self.datadir, "node.stdout"), "w")
            stderr = open(os.path.join(self.datadir, "node.stderr"), "w")
            self.proc = subprocess.Popen(self.command(self.rpc_port, self.zmq_port, extra_args), stdout=stdout,
                                         stderr=stderr, stdin=subprocess.DEVNULL)
            stdout.close()
            stderr.close()
            try:
                self._wait_ready(timeout_s)
                return self
            except _Retry as e:      # a port was taken meanwhile: try others
                last_error = e
                self._kill()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError(f"bitcoind did not start: {last_error}")

    def _wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.stderr() + self._debug_log_tail()
                if "in use" in err or "Unable to bind" in err:
                    raise _Retry(err[-500:])     # a port taken between choosing and binding it
                raise RuntimeError(f"bitcoind exited with {self.proc.returncode}: {err[-2000:]}")
            if os.path.exists(self.cookie_path):
                try:
                    self._auth = None
                    self.rpc("getblockchaininfo", timeout=5)
                    return
                except RpcError as e:
                    if e.code not in (-28, None):      # -28: still warming up
                        raise
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"bitcoind did not answer within {timeout_s} s: {self.stderr()[-2000:]}")

    def stop(self, timeout_s=30):
        """Stops the process this object started (the stop RPC, then SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.rpc("stop", timeout=5)
        except Exception:  # already going away, or not answering: signals below
            pass
        try:
            self.proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def _kill(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _debug_log_tail(self):
        try:
            with open(os.path.join(self.datadir, "regtest", "debug.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(os.path.join(self.datadir, "node.stderr")) as f:
                return f.read()
        except OSError:
            return ""

    # JSON-RPC

    def http(self, body, path="/", auth=True, headers=None, method="POST", timeout=60):
        """One raw HTTP request: (status, headers dict with lower-case names, body bytes)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        all_headers = {"Content-Type": "application/json"}
        if auth is True:
            all_headers["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        elif isinstance(auth, str):
            all_headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        all_headers.update(headers or {})
        request = urllib.request.Request(self.rpc_url + path, data=body if method != "GET" else None,
                                         headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def _path(self, wallet):
        return "/" if wallet is None else "/wallet/" + urllib.parse.quote(wallet, safe="")

    def rpc(self, method, *params, wallet=None, timeout=60):
        """Calls method; returns its result or raises RpcError(code, message)."""
        self._next_id += 1
        status, _, data = self.http({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)},
                                    self._path(wallet), timeout=timeout)
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RpcError(None, f"HTTP {status}: {data[:200]!r}", status)
        if answer.get("error") is not None:
            raise RpcError(answer["error"].get("code"), answer["error"].get("message"), status)
        return answer.get("result")

    def batch(self, calls, wallet=None, timeout=60):
        """[(method, [params])] in one request; a list of results and RpcError objects."""
        body = []
        for method, params in calls:
            self._next_id += 1
            body.append({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)})
        status, _, data = self.http(body, self._path(wallet), timeout=timeout)
        answers = json.loads(data)
        by_id = {a.get("id"): a for a in answers}
        out = []
        for request in body:
            a = by_id.get(request["id"], {})
            if a.get("error") is not None:
                out.append(RpcError(a["error"].get("code"), a["error"].get("message"), status))
            else:
                out.append(a.get("result"))
        return out

    def mine(self, n, address=None):
        """generatetoaddress n blocks (to address, or to an address of no wallet); their hashes."""
        if address is None:
            if self._mine_address is None:
                sys.path.insert(0, HERE)
                from btc_double import hash160, segwit_encode  # noqa: E402 (no pyzmq needed)
                self._mine_address = segwit_encode("bcrt", 0, hash160(b"bitacora test miner"))
            address = self._mine_address
        return self.rpc("generatetoaddress", n, address, timeout=300)


class _Retry(Exception):
    pass
