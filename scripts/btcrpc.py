#!/usr/bin/python3
"""A minimal bitcoin-cli for the demo and the benchmarks (Bitcoin Core is in no package
registry here): calls a bitcoind (or the regtest double) with its cookie and prints the
result as JSON.

  btcrpc.py COOKIE_FILE PORT [-wallet=NAME] METHOD [ARG...]   (ARG parsed as JSON when it is JSON)
"""
import base64
import json
import sys
import urllib.error
import urllib.request


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    cookie_file, port, rest = argv[1], argv[2], argv[3:]
    path = "/"
    if rest and rest[0].startswith("-wallet="):
        path = "/wallet/" + rest[0].split("=", 1)[1]
        rest = rest[1:]
    method, params = rest[0], []
    for arg in rest[1:]:
        try:
            params.append(json.loads(arg))
        except ValueError:
            params.append(arg)
    with open(cookie_file) as f:
        cookie = f.read().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                          "params": params}).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            reply = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        reply = json.loads(body) if body else {"error": {"code": e.code, "message": f"HTTP {e.code}"}}
    if reply.get("error"):
        print(f"error code: {reply['error']['code']}\nerror message: {reply['error']['message']}", file=sys.stderr)
        return 1
    result = reply["result"]
    print(result if isinstance(result, str) else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
