"""Minimal Ethereum JSON-RPC and ABI helpers for the deploy and workload tools.

Standard library only, plus Debian's python3-pycryptodome for Keccak-256. Requests go
over one keep-alive HTTP connection; batches are sent as JSON-RPC batch arrays."""

import http.client
import json
import os
import urllib.parse

from Cryptodome.Hash import keccak as _keccak

ARTIFACTS_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "out")


class RpcError(RuntimeError):
    pass


def keccak(data: bytes) -> bytes:
    h = _keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def event_topic(signature: str) -> str:
    return "0x" + keccak(signature.encode()).hex()


class Rpc:
    """JSON-RPC client over one persistent HTTP connection."""

    def __init__(self, url, timeout_s=120):
        parsed = urllib.parse.urlparse(url)
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.path = parsed.path or "/"
        self.timeout_s = timeout_s
        self.conn = None
        self.next_id = 1

    def _post(self, payload):
        body = json.dumps(payload).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self.conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                data = response.read()
                if response.status != 200:
                    raise RpcError(f"HTTP {response.status}: {data[:200]!r}")
                return json.loads(data)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def call(self, method, *params):
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}
        self.next_id += 1
        reply = self._post(request)
        if "error" in reply:
            raise RpcError(f"{method}: {reply['error']}")
        return reply["result"]

    def batch(self, calls, chunk=500):
        """calls: list of (method, params). Returns results in order; raises on any error."""
        results = []
        for start in range(0, len(calls), chunk):
            requests = []
            for method, params in calls[start:start + chunk]:
                requests.append({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)})
                self.next_id += 1
            replies = {reply["id"]: reply for reply in self._post(requests)}
            for request in requests:
                reply = replies.get(request["id"])
                if reply is None:
                    raise RpcError(f"{request['method']}: no reply in batch")
                if "error" in reply:
                    raise RpcError(f"{request['method']} {request['params']}: {reply['error']}")
                results.append(reply["result"])
        return results

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ----- ABI encoding of the static argument types the tools need -----

def enc_uint(value: int) -> str:
    if value < 0 or value >= 1 << 256:
        raise ValueError(f"uint256 out of range: {value}")
    return f"{value:064x}"


def enc_address(address: str) -> str:
    raw = address[2:] if address.startswith("0x") else address
    if len(raw) != 40:
        raise ValueError(f"not an address: {address}")
    return raw.lower().rjust(64, "0")


def enc_bool(value: bool) -> str:
    return enc_uint(1 if value else 0)


def enc_bytes32(value: bytes) -> str:
    if len(value) != 32:
        raise ValueError("bytes32 needs 32 bytes")
    return value.hex()


class Artifact:
    """A forge build artifact: ABI, creation bytecode and function selectors."""

    def __init__(self, artifacts_dir, source, name):
        path = os.path.join(artifacts_dir, source, f"{name}.json")
        with open(path) as f:
            data = json.load(f)
        self.name = name
        self.abi = data["abi"]
        self.bytecode = data["bytecode"]["object"]
        self.selectors = data["methodIdentifiers"]

    def calldata(self, signature, *encoded_args):
        return "0x" + self.selectors[signature] + "".join(encoded_args)

    def events(self):
        out = {}
        for entry in self.abi:
            if entry.get("type") == "event":
                signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                out[event_topic(signature)] = entry["name"]
        return out
