"""Operations: a backup of a running daemon during a busy catch-up, restored into a fresh
data dir (same root at the backup's size, the same final root after catching up, anchor
proofs intact); options refused before the data dir is touched; -rpcbind beyond
loopback only with -rpcallowip; bitacora-inspect's -help and -version; the systemd unit
and the logrotate snippet."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm_chain import Platform, wait_synced_at  # noqa: E402
from harness import Daemon, check, main, run, wait_for  # noqa: E402
from rpc_proxy import FaultProxy  # noqa: E402
from test_api import verify_consistency  # noqa: E402
from test_btc_anchor import CONFIRMATIONS, Api, Setup, cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plain(hex_text):
    return hex_text[2:] if hex_text.startswith("0x") else hex_text


def tool(options, name):
    return os.path.join(os.path.dirname(options.bitacorad), name)


def test_backup_during_catch_up_restores_and_catches_up(options, tmp):
    platform = Platform(options, tmp, seed=13)
    s = None
    proxy = None
    restored = None
    try:
        platform.waves(10)  # about a thousand blocks with events in most
        platform.mine(70)
        # 10 ms per upstream request, one block per eth_getLogs, one fetcher: the catch-up
        # is still appending when the backup runs.
        proxy = FaultProxy(platform.anvil.url, latency_s=0.01).start(0)
        s = Setup(options, tmp)
        s.start(extra=platform.follower_args(url=proxy.url,
                                             extra=["-evmlograngemax=1", "-evmlogrange=1", "-evmfetchers=1"]))
        # What no chain can give back: off-chain events and an anchor's proof material.
        s.signer.submit(s.api, 3)
        anchored = s.api.call("admin_anchorNow")
        check(anchored["anchored"], f"admin_anchorNow: {anchored}")
        s.mine(CONFIRMATIONS)
        final_anchor = s.wait_anchor(1, "final")
        # The catch-up has appended EVM events after the anchor's and goes on appending.
        status = wait_for(lambda: (lambda st: st["ledger"]["size"] > final_anchor["treeSize"] + 50 and st)(
            s.api.call("bitacora_status")), 60, "EVM events after the anchor")
        check(status["sources"]["evm"]["state"] == "catching-up",
              f"the EVM follower is still catching up: {status['sources']['evm']['state']}")

        # Backups every half second while the catch-up appends: each must hold exactly
        # the size and root it reports, whatever was being appended meanwhile.
        common = ["-chain=regtest", f"-datadir={s.datadir}", f"-rpcport={s.api.port}"]
        answers = []
        for i in range(4):
            backup_dir = os.path.join(tmp, "backups", f"b{i}")
            started = time.monotonic()
            out = cli(options, *common, "backup", backup_dir, expect=0)
            answer = json.loads(out.stdout)
            print(f"backup of {answer['treeSize']} events in {time.monotonic() - started:.2f} s "
                  f"(elapsedMs {answer['elapsedMs']})", flush=True)
            with open(os.path.join(backup_dir, "BACKUP.json")) as f:
                check(json.load(f) == answer, "BACKUP.json is what the call answered")
            answers.append((backup_dir, answer))
            time.sleep(0.5)
        after = s.api.call("bitacora_status")
        check(after["sources"]["evm"]["state"] == "catching-up", "the backups ran during the catch-up")
        sizes = [a["treeSize"] for _, a in answers]
        check(sizes == sorted(sizes) and sizes[-1] > sizes[0] > final_anchor["treeSize"],
              f"the log grew between the backups: {sizes}")
        backup_dir, answer = answers[-1]
        manifest = answer
        check(manifest["anchors"] == 1 and manifest["latestAnchor"]["state"] == "final", f"anchors: {manifest}")
        check(manifest["highWaterMark"]["anchorId"] == 1, "the backup's mark holds the anchor")
        check(manifest["files"] == ["evm-chain.json"], f"the EVM chain identity is in the backup: {manifest['files']}")
        check(manifest["checkpointKey"]["included"] and
              plain(manifest["checkpointKey"]["publicKey"]) == plain(status["ledger"]["checkpointKey"]),
              f"the checkpoint key is in the backup: {manifest['checkpointKey']}")
        check(oct(os.stat(os.path.join(backup_dir, "checkpoint.key")).st_mode & 0o777) == "0o600", "key mode 0600")

        again = cli(options, *common, "backup", backup_dir)
        check(again.returncode != 0 and "not empty" in again.stderr, f"a second backup into b1: {again.stderr}")
        relative = cli(options, *common, "-named", "admin_backup", "dir=relative/b2")
        check(relative.returncode != 0 and "not an absolute path" in relative.stderr, relative.stderr)

        # The original catches up; its tree at the backup's size is the backup's.
        proxy.set_faults(latency_s=0)
        wait_synced_at(s.datadir, platform, timeout_s=300, daemon=s.daemon)
        final = s.api.call("bitacora_status")["ledger"]
        for _, each in answers:
            proof = s.api.call("ledger_getConsistencyProof", each["treeSize"], final["size"])
            check(plain(proof["firstRoot"]) == plain(each["root"]),
                  f"the original's root at {each['treeSize']} is the backup's")
            check(verify_consistency(each["treeSize"], final["size"], bytes.fromhex(plain(each["root"])),
                                     bytes.fromhex(plain(final["root"])),
                                     [bytes.fromhex(plain(p)) for p in proof["path"]]),
                  "RFC 9162: the backup is a prefix of the original's final log")

        # Restore into a fresh data dir, as the operator guide says.
        restored_dir = os.path.join(tmp, "restored")
        netdir = os.path.join(restored_dir, "regtest")
        os.makedirs(restored_dir)
        shutil.copytree(backup_dir, netdir)  # the backup is laid out as <datadir>/<chain>/
        out = subprocess.run([tool(options, "bitacora-inspect"), os.path.join(netdir, "ledger")], input="summary\n",
                             capture_output=True, text=True, timeout=60)
        summary = json.loads(out.stdout.splitlines()[0])
        check(summary["size"] == answer["treeSize"] and plain(summary["root"]) == plain(answer["root"]),
              f"the restored ledger holds what BACKUP.json says: {summary}")
        restored = Daemon(options.bitacorad, restored_dir, s.daemon_args(platform.follower_args())).start()
        api = Api(restored_dir, restored)
        wait_synced_at(restored_dir, platform, timeout_s=300, daemon=restored)
        mine = api.call("bitacora_status")["ledger"]
        check(mine["size"] == final["size"] and plain(mine["root"]) == plain(final["root"]),
              f"the restored daemon caught up to the original's root: {mine} vs {final}")
        check(plain(mine["checkpointKey"]) == plain(status["ledger"]["checkpointKey"]), "the same checkpoint key")
        anchor = api.call("ledger_getAnchor", 1)
        check(anchor["state"] == "final" and anchor["proof"] == final_anchor["proof"], "the anchor's proof material")
        bundle = api.call("ledger_getProofBundle", 0)
        check(bundle["anchor"] is not None and bundle["anchor"]["id"] == 1, "event 0 is proven by anchor 1")
        path = os.path.join(tmp, "restored-bundle.json")
        with open(path, "w") as f:
            json.dump(bundle, f)
        out = cli(options, "verifyproof", path, "-requireanchor", f"-checkpointkey={plain(mine['checkpointKey'])}",
                  f"-btcrpcconnect=127.0.0.1:{s.node.rpc_port}", f"-btcrpccookiefile={s.node.cookie_path}",
                  f"-minconfirmations={CONFIRMATIONS}", expect=0)
        check(out.stdout.startswith("VALID") and "anchored by transaction" in out.stdout and "best chain" in out.stdout,
              out.stdout)
        height = bundle["anchor"]["blockHeight"]
        check(plain(bundle["anchor"]["blockHash"]) == plain(s.node.rpc("getblockhash", height)),
              "the anchor's block is in the node's best chain")
    finally:
        if restored:
            restored.stop()
        if s:
            s.stop()
        if proxy:
            proxy.stop()
        platform.stop()


def _tree(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, dirs, files in os.walk(directory) for name in dirs + files)


def test_refused_options_leave_the_data_dir_untouched(options, tmp):
    """Every option is checked before the data dir is touched: a refused start creates
    no chain directory, database or checkpoint.key."""
    cases = [
        (["-evmrpc=http://127.0.0.1:1"], "-escrow"),
        (["-evmrpc=http://127.0.0.1:1 ", "-escrow=0x" + "11" * 20, "-vault=0x12"], "vault"),
        (["-rpcbind=0.0.0.0"], "-rpcallowip"),
        (["-rpcbind=::", "-rpcport=0"], "-rpcallowip"),
        (["-btcrpcconnect=127.0.0.1", "-btcrpcuser=u"], "-btcrpcpassword"),
    ]
    for extra, expected in cases:
        datadir = os.path.join(tmp, f"d{len(os.listdir(tmp))}")
        os.makedirs(datadir)
        out = run(options.bitacorad, f"-datadir={datadir}", "-chain=regtest", "-printtoconsole=0", *extra)
        check(out.returncode == 1 and expected in out.stderr, f"{extra}: exit {out.returncode}: {out.stderr}")
        check(_tree(datadir) == [], f"{extra} left {_tree(datadir)} in the data dir")


def _non_loopback_address():
    """This machine's address on its default route (a UDP connect sends nothing)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _status_from(address, port, cookie):
    import base64
    import urllib.error
    import urllib.request
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bitacora_status", "params": []}).encode()
    request = urllib.request.Request(f"http://{address}:{port}/", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def _metric_from_loopback(port, cookie, series):
    import base64
    import urllib.request
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{series} is not in /metrics")


def test_rpcbind_beyond_loopback_needs_rpcallowip_and_enforces_it(options, tmp):
    address = _non_loopback_address()
    check(address is not None, "this test needs a non-loopback IPv4 address to connect from")
    datadir = os.path.join(tmp, "node")
    os.makedirs(datadir)
    from evm_chain import read_log
    import re
    for allow, expected in (("10.9.0.0/16", 403), (f"{address}/32", 200)):
        offset = len(read_log(datadir))
        daemon = Daemon(options.bitacorad, datadir, ["-chain=regtest", "-printtoconsole=0", "-rpcport=0",
                                                     "-rpcbind=0.0.0.0", f"-rpcallowip={allow}"]).start()
        try:
            match = wait_for(lambda: re.findall(r"RPC server on port (\d+)", read_log(datadir)[offset:]), 30,
                             "the RPC server")
            port = int(match[-1])
            log = read_log(datadir)[offset:]
            check(f"WARNING: the API listens on 0.0.0.0, beyond loopback: clients of -rpcallowip ({allow})" in log,
                  "a bind beyond loopback is warned about, with the allowed clients")
            with open(os.path.join(datadir, "regtest", ".cookie")) as f:
                cookie = f.read().strip()
            check(_status_from("127.0.0.1", port, cookie) == 200, "loopback is always allowed")
            got = _status_from(address, port, cookie)
            check(got == expected, f"a client at {address} with -rpcallowip={allow}: HTTP {got}, expected {expected}")
            refused = _metric_from_loopback(port, cookie, 'bitacora_rpc_rejected_total{reason="client_not_allowed"}')
            check(refused == (1 if expected == 403 else 0), f"refused clients counted in /metrics: {refused}")
        finally:
            daemon.stop()


def test_bitacora_inspect_help_and_version(options, tmp):
    inspect = tool(options, "bitacora-inspect")
    for flag in ("-version", "--version"):
        out = run(inspect, flag, env={"PWD": tmp})
        check(out.returncode == 0 and out.stdout.startswith("Bitácora ledger inspector version v"), f"{flag}: {out}")
    for flag in ("-help", "--help", "-h", "-?"):
        out = run(inspect, flag)
        check(out.returncode == 0 and "Usage: bitacora-inspect <ledger directory>" in out.stdout, f"{flag}: {out}")
    out = run(inspect, "-nonsense")
    check(out.returncode == 2 and "unknown option '-nonsense'" in out.stderr, f"-nonsense: {out}")
    check(not os.path.exists("-version") and not os.path.exists(os.path.join(tmp, "-version")), "no '-version' database")


def test_systemd_unit_verifies_and_is_hardened(options, tmp):
    """`systemd-analyze verify` is clean (the man page included) and `systemd-analyze
    security` rates the unit below 2.5; the unit gives /etc/bitacora to its group."""
    analyze = shutil.which("systemd-analyze")
    check(analyze is not None, "systemd-analyze is missing: install Debian's systemd (scripts/setup.sh does)")
    with open(os.path.join(REPO, "conf", "bitacorad.service")) as f:
        unit = f.read()
    check("ExecStartPre=!/bin/chgrp bitacora /etc/bitacora" in unit, "the unit gives its config directory to its group")
    check("ExecStart=/usr/local/bin/bitacorad " in unit, "the unit starts /usr/local/bin/bitacorad")
    path = os.path.join(tmp, "bitacorad.service")
    with open(path, "w") as f:
        f.write(unit.replace("ExecStart=/usr/local/bin/bitacorad ", f"ExecStart={os.path.abspath(options.bitacorad)} "))
    man1 = os.path.join(tmp, "man", "man1")
    os.makedirs(man1)
    for page in ("bitacorad.1", "bitacora-cli.1"):
        built = os.path.join(os.path.dirname(options.bitacorad), page)
        check(os.path.exists(built), f"the build made {page} (help2man)")
        shutil.copy(built, man1)
    env = {"MANPATH": os.path.join(tmp, "man"), "SYSTEMD_LOG_LEVEL": "notice"}
    out = run(analyze, "verify", path, env=env)
    check(out.returncode == 0 and out.stderr.strip() == "", f"systemd-analyze verify: {out.returncode} {out.stderr}")
    out = run(analyze, "security", "--offline=true", path, env=env)
    import re
    match = re.search(r"Overall exposure level for bitacorad.service: ([0-9.]+)", out.stdout)
    check(match is not None, f"systemd-analyze security: {out.stdout[-500:]} {out.stderr}")
    print(f"systemd-analyze security: exposure {match.group(1)}", flush=True)
    check(float(match.group(1)) < 2.5, f"exposure {match.group(1)} is not below 2.5")


def test_logrotate_snippet_rotates_a_running_daemons_log(options, tmp):
    """conf/bitacorad.logrotate, pointed at a test data dir (its user, and kill -HUP for
    systemctl reload): the old lines stay in debug.log.1 and bitacorad writes a new
    debug.log."""
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    check(os.path.exists(logrotate), "logrotate is missing: install Debian's logrotate (scripts/setup.sh does)")
    datadir = os.path.join(tmp, "lib")
    os.makedirs(datadir, mode=0o755)
    daemon = Daemon(options.bitacorad, datadir, ["-chain=regtest", "-printtoconsole=0", "-noserver"]).start()
    try:
        log_path = os.path.join(datadir, "regtest", "debug.log")
        wait_for(lambda: os.path.exists(log_path) and "Initialization done" in open(log_path).read(), 30, "the daemon")
        with open(os.path.join(REPO, "conf", "bitacorad.logrotate")) as f:
            snippet = f.read()
        import pwd
        import grp
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        replaced = snippet
        for old, new in (("/var/lib/bitacorad", datadir), ("su bitacora bitacora", f"su {user} {group}"),
                         ("create 0600 bitacora bitacora", f"create 0600 {user} {group}"),
                         ("systemctl reload bitacorad.service", f"kill -HUP {daemon.proc.pid}")):
            check(old in replaced, f"the snippet has '{old}'")
            replaced = replaced.replace(old, new)
        conf = os.path.join(tmp, "bitacorad.logrotate")
        with open(conf, "w") as f:
            f.write(replaced)
        out = run(logrotate, "-f", "-s", os.path.join(tmp, "logrotate.state"), conf)
        check(out.returncode == 0, f"logrotate: {out.stdout} {out.stderr}")
        check(os.path.exists(log_path + ".1") and "Initialization done" in open(log_path + ".1").read(),
              "the rotated file holds the old lines")
        wait_for(lambda: os.path.exists(log_path) and "Log file reopened" in open(log_path).read(), 10,
                 "a new debug.log after the rotation")
        check(oct(os.stat(log_path).st_mode & 0o777) == "0o600", "the new log is 0600")
        check(daemon.proc.poll() is None, "the daemon lives on")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main([test_backup_during_catch_up_restores_and_catches_up, test_refused_options_leave_the_data_dir_untouched,
          test_rpcbind_beyond_loopback_needs_rpcallowip_and_enforces_it, test_bitacora_inspect_help_and_version,
          test_systemd_unit_verifies_and_is_hardened, test_logrotate_snippet_rotates_a_running_daemons_log])
