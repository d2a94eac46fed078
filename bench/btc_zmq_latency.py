"""From bitcoind's ZMQ block message to the block processed by bitacorad (read over RPC,
parsed, Merkle root checked, anchors looked for, cursor written): bitacorad measures
each interval itself and reports p50/p99 in bitacora_status (sources.btc.zmqToProcessedMs).

Runs against the regtest double, or a real bitcoind when BITCOIND names one. Each block
carries wallet transactions (sendmany with many outputs), so that blocks are not empty.

  /usr/bin/python3 bench/btc_zmq_latency.py [--blocks 200] [--outputs 400] [--bitacorad build/daemon/bitacorad]
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from btc_node import BtcNode  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--outputs", type=int, default=400, help="outputs of the sendmany in each block")
    parser.add_argument("--bitacorad", default=os.path.join(ROOT, "build", "daemon", "bitacorad"))
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bitacora-zmq-bench-")
    node = BtcNode()
    daemon = None
    try:
        node.start(os.path.join(tmp, "bitcoind"))
        node.rpc("createwallet", "anchor")
        address = node.rpc("getnewaddress", wallet="anchor")
        node.rpc("generatetoaddress", 110, address)
        targets = [node.rpc("getnewaddress", wallet="anchor") for _ in range(args.outputs)]
        datadir = os.path.join(tmp, "bitacora")
        os.makedirs(datadir)
        daemon = subprocess.Popen(
            [args.bitacorad, "-chain=regtest", f"-datadir={datadir}", "-printtoconsole=0", "-rpcport=0",
             f"-btcrpcconnect=127.0.0.1:{node.rpc_port}", f"-btcrpccookiefile={node.cookie_path}", "-anchor=0"],
            stdin=subprocess.DEVNULL)
        log = os.path.join(datadir, "regtest", "debug.log")
        port = None
        for _ in range(300):
            m = re.search(r"RPC server on port (\d+)", open(log).read()) if os.path.exists(log) else None
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.1)
        cookie = open(os.path.join(datadir, "regtest", ".cookie")).read().strip()

        def status():
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bitacora_status", "params": []}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, headers={
                "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
            return json.load(urllib.request.urlopen(req, timeout=10))["result"]["sources"]["btc"]

        sizes = []
        started = time.monotonic()
        for i in range(args.blocks):
            node.rpc("sendmany", "", {t: 0.0001 for t in targets}, wallet="anchor")
            block_hash = node.rpc("generatetoaddress", 1, address)[0]
            sizes.append(node.rpc("getblock", block_hash, 1)["size"])
            height = node.rpc("getblockcount")
            deadline = time.monotonic() + 30
            while status()["tipHeight"] != height:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bitacorad did not process block {height}")
                time.sleep(0.002)
        elapsed = time.monotonic() - started
        s = status()
        lat = s["zmqToProcessedMs"]
        print(f"node: {'real bitcoind ' + os.environ['BITCOIND'] if node.is_real else 'regtest double'}; "
              f"ZMQ topic {s['zmq']['topic']}")
        print(f"{args.blocks} blocks of {sum(sizes) // len(sizes)} bytes on average (max {max(sizes)}), "
              f"mined and processed in {elapsed:.1f} s")
        print(f"ZMQ message -> block processed: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
              f"({lat['samples']} blocks announced by ZMQ; target p99 < 100 ms)")
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=30)
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
