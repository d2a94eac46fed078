"""Storage faults, end to end (issue 12): a running bitacorad reports its ledger's health
(GET /health, bitacora_status) and checks it on request (admin_checkLedger);
bitacora-inspect checks a stopped one; and a ledger whose WAL and CURRENT are gone is
refused at start instead of being created afresh beside the old one's files."""

import base64
import glob
import json
import os
import re
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, check, main, run, wait_for  # noqa: E402


def start(options, datadir):
    daemon = Daemon(options.bitacorad, datadir, ["-chain=regtest", "-rpcport=0", "-nodebuglogfile"]).start()
    found = wait_for(lambda: re.search(r"RPC server on port (\d+)", daemon.stdout()), 30, "the RPC server")
    return daemon, int(found.group(1))


def http(port, path, body=None, cookie=None):
    """Returns (HTTP status, parsed body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    if cookie:
        request.add_header("Authorization", "Basic " + base64.b64encode(cookie.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def call(port, cookie, method):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    status, answer = http(port, "/", body, cookie)
    check(status == 200 and "result" in answer, f"{method}: {status} {answer}")
    return answer["result"]


def test_health_status_and_consistency_checks(options, tmp):
    daemon, port = start(options, tmp)
    try:
        with open(os.path.join(tmp, "regtest", ".cookie")) as f:
            cookie = f.read().strip()
        status, body = http(port, "/health")
        check(status == 200 and body["status"] == "ready" and body["ledger"] == {"state": "ok", "reason": ""}
              and body["sources"] == {}, f"/health: {status} {body}")
        health = call(port, cookie, "bitacora_status")["ledger"]["health"]
        check(health == {"state": "ok", "reason": ""}, f"bitacora_status health: {health}")
        report = call(port, cookie, "admin_checkLedger")
        check(report["consistent"] and report["problemsTotal"] == 0, f"admin_checkLedger: {report}")
        status, _ = http(port, "/", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "admin_checkLedger"}).encode())
        check(status == 401, f"admin_checkLedger without credentials: HTTP {status}")
    finally:
        daemon.stop()
    inspect = os.path.join(os.path.dirname(options.bitacorad), "bitacora-inspect")
    out = run(inspect, os.path.join(tmp, "regtest", "ledger"), "check")
    check(out.returncode == 0, f"bitacora-inspect check exited {out.returncode}: {out.stdout} {out.stderr}")
    check(json.loads(out.stdout)["consistent"], out.stdout)


def test_a_lost_database_is_not_recreated(options, tmp):
    daemon, _ = start(options, tmp)
    daemon.stop()
    ledger = os.path.join(tmp, "regtest", "ledger")
    check(os.path.exists(os.path.join(ledger, "HIGH_WATER_MARK")), "no high-water mark next to the database")
    for wal in glob.glob(os.path.join(ledger, "*.log")):
        os.remove(wal)
    os.remove(os.path.join(ledger, "CURRENT"))
    result = run(options.bitacorad, f"-datadir={tmp}", "-chain=regtest", "-rpcport=0", "-nodebuglogfile")
    check(result.returncode == 1, f"bitacorad started on a lost database (exit {result.returncode})")
    output = result.stdout + result.stderr
    check("refusing to create a new ledger" in output and "checkpoint.key" in output and "backup" in output, output)
    check(not os.path.exists(os.path.join(ledger, "CURRENT")), "a fresh database was created")
    check("Created database" not in output, output)


if __name__ == "__main__":
    main([test_health_status_and_consistency_checks, test_a_lost_database_is_not_recreated])
