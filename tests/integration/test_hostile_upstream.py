"""Hostile upstreams (issue 12, the trust boundary): a scripted node (hostile_node.py) in
front of a real anvil with the platform's contracts and a workload answers chosen methods
with JSON nested 200,000 deep (eth_chainId's id, error and error.data, then eth_getLogs'
result), a 600 MB body (eth_getLogs, then eth_getBlockByNumber), an endless chunked body, a
gzip bomb (1 MiB inflating to 1.1 GiB), and a body that hangs mid-transfer while the daemon
gets SIGTERM. Under each: bitacorad stays alive and answers its API, its peak RSS (VmHWM)
stays under RSS_BOUND_MIB, and once the node turns honest its ledger at the final block
(size, root, final block, a consistency proof from what it held during the attack) equals
an honest reference daemon's that follows anvil directly. The Bitcoin side: a proxy in
front of the bitcoind double answers getblock deep, huge and endless.

Forged topics and dropped logs are test_evm_lying_node.py's. Each scenario prints one
line `HOSTILE <scenario>: <outcome>; peak RSS <n> MiB ...` for the closing note."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile_node  # noqa: E402
from evm_chain import Platform, read_log, start_follower, wait_synced_at  # noqa: E402
from harness import Daemon, TestFailure, check, main, wait_for  # noqa: E402
from hostile_node import HostileNode  # noqa: E402
from test_api import unhex, verify_consistency  # noqa: E402

# The bound on peak RSS under any hostile node, from the caps (indexer/evm/json_rpc_client.h):
# one answer holds at most 32 MiB decoded for eth_getLogs, 16 MiB otherwise, and three
# transfers may be in flight at once (-evmfetchers=2 eth_getLogs ranges, and the follower's
# own header calls): 80 MiB. The answer's std::string grows by doubling (the outgrown buffer
# and the new one both live while it is copied), and glibc's per-thread arenas keep freed
# buffers resident once its dynamic mmap threshold has risen to 32 MiB: up to 4 x 80 MiB, on
# an honest catch-up's ~35 MiB. Measured: 250-290 MiB, up to 350 MiB under meson's
# MALLOC_PERTURB_ (which touches every byte malloc hands out); bound 512 MiB, half a GiB,
# where one 500 MB eth_getLogs answer used to take 11 GB.
RSS_BOUND_MIB = 512
SIGTERM_EXIT_S = 5.0     # a transfer in flight must not hold shutdown (the client timeout is 30 s)
HOSTILE_PHASE_S = 25     # the longest a hostile phase waits for its answers to be asked for
RECOVERY_S = 90          # from the node turning honest to the daemon at the head


# --- measurement -------------------------------------------------------------------------

def _status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssWatch:
    """Polls VmHWM (peak RSS) of one process every 50 ms, so that the last peak is known
    even after the process is gone."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self):
        hwm = _status_kib(self.pid, "VmHWM")
        if hwm is not None:
            self.peak_kib = max(self.peak_kib, hwm)
        return self.peak_kib

    @property
    def peak_mib(self):
        return self.sample() / 1024

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)


class Api:
    """The daemon's JSON-RPC API with its cookie; the port from this run's log lines."""

    def __init__(self, datadir, daemon, log_offset=0):
        def port():
            if daemon.proc.poll() is not None:
                raise TestFailure(f"bitacorad exited with {daemon.proc.returncode}: {read_log(datadir)[-3000:]}")
            return re.search(r"RPC server on port (\d+)", read_log(datadir)[log_offset:])
        self.port = int(wait_for(port, 30, "the RPC server").group(1))
        with open(os.path.join(datadir, "regtest", ".cookie")) as f:
            self.cookie = f.read().strip()

    def call(self, method, *params, timeout=30):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/", data=body, headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(self.cookie.encode()).decode()})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            reply = json.loads(answer.read())
        if reply.get("error"):
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]


def _checkpoint_at_size(api):
    """bitacora_status' size and final block, and the checkpoint of that size."""
    def same():
        status = api.call("bitacora_status")
        size = status["ledger"]["size"]
        if size == 0:
            return status, {"treeSize": 0, "root": None}
        checkpoint = api.call("ledger_getCheckpoint")
        return checkpoint["treeSize"] == size and (status, checkpoint)
    return wait_for(same, 20, "a checkpoint of the ledger's size")


def _check_equal_to_reference(name, api, reference, held):
    """Size, root and final block equal the reference's; what the daemon held during the
    hostile phase (`held`: treeSize, root) is a prefix of the final ledger."""
    status, checkpoint = _checkpoint_at_size(api)
    ref_status, ref_checkpoint = reference
    check(status["sources"]["evm"]["finalBlock"] == ref_status["sources"]["evm"]["finalBlock"],
          f"{name}: final block {status['sources']['evm']['finalBlock']}, the reference's "
          f"{ref_status['sources']['evm']['finalBlock']}")
    check(checkpoint["treeSize"] == ref_checkpoint["treeSize"],
          f"{name}: ledger size {checkpoint['treeSize']}, the reference's {ref_checkpoint['treeSize']}")
    check(checkpoint["root"] == ref_checkpoint["root"],
          f"{name}: ledger root {checkpoint['root']}, the reference's {ref_checkpoint['root']}")
    size = checkpoint["treeSize"]
    if held and held["treeSize"]:
        first = held["treeSize"]
        proof = api.call("ledger_getConsistencyProof", first, size)
        check(verify_consistency(first, size, unhex(held["root"]), unhex(checkpoint["root"]),
                                 [unhex(p) for p in proof["path"]]),
              f"{name}: the ledger held during the attack ({first}) is not a prefix of the final one ({size})")
    return size, checkpoint["root"]


def _report(name, outcome, peak_mib, detail=""):
    print(f"HOSTILE {name}: {outcome}; peak RSS {peak_mib:.0f} MiB (bound {RSS_BOUND_MIB} MiB)"
          + (f"; {detail}" if detail else ""), flush=True)


# --- the EVM scenarios -------------------------------------------------------------------

class Evm:
    """One anvil with the platform and a workload, an honest reference daemon on it, and
    the hostile node in front of it."""

    def __init__(self, options, tmp):
        self.options = options
        self.tmp = tmp
        self.platform = Platform(options, tmp, seed=41)
        self.daemons = []
        self.node = None
        self.platform.waves(4)
        self.platform.mine(70)  # every wave final: each scenario's daemon catches up through the node
        self.node = HostileNode(self.platform.anvil.url).start()
        self.refdir = os.path.join(tmp, "reference")
        self.reference_head = None
        self._reference = None
        self.reference_rss = 0

    @property
    def reference(self):
        """bitacora_status and the checkpoint of an honest daemon following anvil directly,
        at the chain's current head (the reference resumes when the chain has grown)."""
        head = self.platform.head()
        if head != self.reference_head:
            offset = len(read_log(self.refdir))
            ref = self.start(self.refdir, url=self.platform.anvil.url)
            watch = RssWatch(ref.proc.pid)
            wait_synced_at(self.refdir, self.platform, daemon=ref)
            self._reference = _checkpoint_at_size(Api(self.refdir, ref, offset))
            self.reference_rss = watch.peak_mib
            watch.stop()
            ref.stop()
            self.reference_head = head
            check(self._reference[1]["treeSize"] > 100, f"a small reference ledger: {self._reference}")
            _report("reference (honest anvil)", "synced", self.reference_rss,
                    f"{self._reference[1]['treeSize']} events to final block "
                    f"{self._reference[0]['sources']['evm']['finalBlock']}")
        return self._reference

    def start(self, datadir, url=None, extra=()):
        daemon = start_follower(self.options, self.platform, datadir, url=url or self.node.url,
                                extra=["-evmrpctimeout=30000", *extra])
        self.daemons.append(daemon)
        return daemon

    def stop(self):
        for daemon in self.daemons:
            daemon.stop()
        if self.node:
            self.node.stop()
        self.platform.stop()


def _alive(daemon, datadir, name):
    if daemon.proc.poll() is not None:
        raise TestFailure(f"{name}: bitacorad exited with {daemon.proc.returncode} under the hostile node: "
                          f"{daemon.stderr()[-1500:]}{read_log(datadir)[-3000:]}")


def _hostile_phase(evm, daemon, datadir, name, rules, answers, watch, first):
    """Sets the rules (the first phase's are set before the daemon starts) and waits until
    the daemon has asked for `answers` hostile answers, checking that it stays alive and
    under the bound all along."""
    if not first:
        evm.node.reset_counts()
        evm.node.set(rules)

    def enough():
        _alive(daemon, datadir, name)
        check(watch.peak_mib < RSS_BOUND_MIB, f"{name}: peak RSS {watch.peak_mib:.0f} MiB over {RSS_BOUND_MIB} MiB")
        return evm.node.count() >= answers
    wait_for(enough, HOSTILE_PHASE_S, f"{name}: {answers} hostile answers asked for")
    time.sleep(0.3)  # the last answer is read (or cut off) and handled
    _alive(daemon, datadir, name)
    return evm.node.count(), evm.node.sent_mib()


def _scenario(evm, name, phases, log_expect):
    """A fresh daemon catches up through the hostile node; each phase's rules hold until
    enough hostile answers were asked for; then the node turns honest."""
    datadir = os.path.join(evm.tmp, name)
    evm.node.reset_counts()
    evm.node.set(phases[0][0])
    daemon = evm.start(datadir)
    watch = RssWatch(daemon.proc.pid)
    try:
        api = Api(datadir, daemon)
        details = []
        for i, (rules, answers) in enumerate(phases):
            count, mib = _hostile_phase(evm, daemon, datadir, name, rules, answers, watch, first=i == 0)
            details.append(f"{'+'.join(f'{m}:{b}' for m, b in rules.items())} x{count} ({mib:.0f} MiB sent)")
        # Alive is not enough: it still answers its API, and says what is wrong.
        status, held = _checkpoint_at_size(api)
        evm_error = status["sources"]["evm"].get("error") or ""
        hostile_peak = watch.peak_mib
        log = read_log(datadir)
        check(any(e in log or e in evm_error for e in log_expect),
              f"{name}: none of {log_expect} in the log or status (status error: {evm_error!r}): {log[-2000:]}")
        evm.node.honest()
        wait_synced_at(datadir, evm.platform, daemon=daemon, timeout_s=RECOVERY_S)
        size, root = _check_equal_to_reference(name, api, evm.reference, held)
        peak = watch.peak_mib
        check(peak < RSS_BOUND_MIB, f"{name}: peak RSS {peak:.0f} MiB over {RSS_BOUND_MIB} MiB")
        daemon.stop()
        _report(name, f"alive, then equal to the reference ({size} events, root {root[:16]})", hostile_peak,
                f"{peak:.0f} MiB after recovery; held {held['treeSize']} events during the attack; " + "; ".join(details))
    finally:
        watch.stop()
        daemon.stop()
        evm.node.honest()


def _live_follow(evm):
    """Synced honestly first, then new final blocks whose logs come back endless, gzip
    bombs and 200,000 deep: nothing is appended meanwhile that the honest ledger does not
    hold (a consistency proof from what it held), and it ends equal to the reference."""
    name = "live_follow_endless_gzip_deep"
    datadir = os.path.join(evm.tmp, name)
    evm.node.honest()
    daemon = evm.start(datadir)
    watch = RssWatch(daemon.proc.pid)
    try:
        api = Api(datadir, daemon)
        wait_synced_at(datadir, evm.platform, daemon=daemon)
        details = []
        _status, held = _checkpoint_at_size(api)
        phases = (({"eth_getLogs": "endless"}, 4), ({"eth_getLogs": "gzip_bomb"}, 4), ({"eth_getLogs": "deep_result"}, 4))
        evm.node.reset_counts()
        evm.node.set(phases[0][0])
        evm.platform.waves(2)
        evm.platform.mine(70)
        for i, (rules, answers) in enumerate(phases):
            count, mib = _hostile_phase(evm, daemon, datadir, name, rules, answers, watch, first=i == 0)
            details.append(f"{'+'.join(f'{m}:{b}' for m, b in rules.items())} x{count} ({mib:.0f} MiB sent)")
        hostile_peak = watch.peak_mib
        evm.node.honest()
        wait_synced_at(datadir, evm.platform, daemon=daemon, timeout_s=RECOVERY_S)
        size, root = _check_equal_to_reference(name, api, evm.reference, held)
        peak = watch.peak_mib
        check(peak < RSS_BOUND_MIB, f"{name}: peak RSS {peak:.0f} MiB over {RSS_BOUND_MIB} MiB")
        daemon.stop()
        _report(name, f"alive, then equal to the reference ({size} events, root {root[:16]}; consistent with the "
                      f"{held['treeSize']} held before the attack)", hostile_peak,
                f"{peak:.0f} MiB after recovery; " + "; ".join(details))
    finally:
        watch.stop()
        daemon.stop()
        evm.node.honest()


def _hang_then_sigterm(evm):
    """A node that stops mid-body (the client would wait its 30 s timeout): SIGTERM ends
    the daemon within SIGTERM_EXIT_S, cleanly; restarted on the honest node it ends equal
    to the reference."""
    name = "hang_mid_body_then_sigterm"
    datadir = os.path.join(evm.tmp, name)
    evm.node.reset_counts()
    evm.node.set({"eth_getLogs": "hang"})
    daemon = evm.start(datadir, extra=["-evmfetchers=1"])
    watch = RssWatch(daemon.proc.pid)
    try:
        api = Api(datadir, daemon)
        wait_for(lambda: (_alive(daemon, datadir, name), evm.node.hanging >= 1)[1], HOSTILE_PHASE_S,
                 "a transfer held mid-body")
        time.sleep(1.0)  # well inside the transfer: curl is waiting for bytes that never come
        _status, held = _checkpoint_at_size(api)
        peak = watch.peak_mib
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout_s=SIGTERM_EXIT_S + 25)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{name}: bitacorad still running 30 s after SIGTERM")
        took = time.monotonic() - started
        check(took <= SIGTERM_EXIT_S, f"{name}: SIGTERM took {took:.1f} s with a transfer in flight "
                                      f"(bound {SIGTERM_EXIT_S} s): {read_log(datadir)[-2000:]}")
        check(code == 0, f"{name}: exit code {code} after SIGTERM: {daemon.stderr()[-1500:]}")
        check(peak < RSS_BOUND_MIB, f"{name}: peak RSS {peak:.0f} MiB")
        evm.node.honest()
        offset = len(read_log(datadir))
        again = evm.start(datadir)
        wait_synced_at(datadir, evm.platform, daemon=again, timeout_s=RECOVERY_S)
        size, root = _check_equal_to_reference(name, Api(datadir, again, offset), evm.reference, held)
        again.stop()
        _report(name, f"SIGTERM exited 0 in {took:.2f} s with a transfer in flight; restarted, equal to the "
                      f"reference ({size} events, root {root[:16]})", peak, f"held {held['treeSize']} events")
    finally:
        watch.stop()
        evm.node.honest()
        daemon.stop()


# A node that answers every eth_getLogs with a huge body must not hold the follower: the
# client cools that endpoint down and asks the next one (json_rpc_client.cpp, SendRaw).


def _stuck_too_large_with_failover(evm):
    """A node that answers every eth_getLogs with a huge body, and an honest second
    -evmrpc: alive, bounded, and synced through the honest one."""
    name = "huge_getlogs_forever_with_honest_second_endpoint"
    datadir = os.path.join(evm.tmp, name)
    evm.node.reset_counts()
    evm.node.set({"eth_getLogs": "huge"})
    daemon = evm.start(datadir, extra=[f"-evmrpc={evm.platform.anvil.url}"])
    watch = RssWatch(daemon.proc.pid)
    try:
        api = Api(datadir, daemon)
        _alive(daemon, datadir, name)
        wait_synced_at(datadir, evm.platform, daemon=daemon, timeout_s=60)
        outcome = "synced through the honest second endpoint"
        peak = watch.peak_mib
        check(peak < RSS_BOUND_MIB, f"{name}: peak RSS {peak:.0f} MiB")
        count, mib = evm.node.count(), evm.node.sent_mib()
        _check_equal_to_reference(name, api, evm.reference, None)
        _report(name, outcome, peak, f"eth_getLogs:huge x{count} ({mib:.0f} MiB sent)")
    finally:
        watch.stop()
        evm.node.honest()
        daemon.stop()


def test_hostile_evm_node(options, tmp):
    threading.Thread(target=hostile_node.gzip_bomb, daemon=True).start()  # 4 s of zlib, made meanwhile
    evm = Evm(options, tmp)
    failures = []

    def attempt(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # every scenario runs; all failures are reported at the end
            print(f"HOSTILE {args[1] if len(args) > 1 else fn.__name__}: FAILED: {e}", flush=True)
            failures.append(e)

    too_large = ["answer larger than"]
    try:
        attempt(_scenario, evm, "deep_json", [
            ({"eth_chainId": "deep"}, 8),        # start-up: id, error, error.data (arrays, objects), twice
            ({"eth_getLogs": "deep_result"}, 4),  # catch-up: a result 200,000 deep
        ], ["nests deeper than"])
        attempt(_scenario, evm, "huge_600MB_body", [
            ({"eth_getLogs": "huge"}, 6),          # the range halves down to one block, then retries
            ({"eth_getBlockByNumber": "huge"}, 4),  # "latest", "finalized" and header batches
        ], too_large)
        attempt(_scenario, evm, "endless_chunked_body", [
            ({"eth_getLogs": "endless"}, 6),
            ({"eth_getBlockByNumber": "endless"}, 3),
        ], too_large)
        attempt(_scenario, evm, "gzip_bomb", [
            ({"eth_getLogs": "gzip_bomb"}, 6),
            ({"eth_getBlockByNumber": "gzip_bomb"}, 3),
        ], too_large)
        attempt(_live_follow, evm)
        attempt(_hang_then_sigterm, evm)
        attempt(_stuck_too_large_with_failover, evm)
    finally:
        evm.stop()
    if failures:
        raise TestFailure(f"{len(failures)} hostile scenario(s) failed: " + "; ".join(str(f)[:300] for f in failures))


# --- the Bitcoin side --------------------------------------------------------------------

def test_hostile_bitcoind(options, tmp):
    """getblock answered deep, huge and endless by a proxy in front of the bitcoind double:
    the daemon stays alive, bounded, and reaches the node's tip once the proxy is honest."""
    from btc_node import BtcNode
    node = BtcNode()
    proxy = None
    daemon = None
    watch = None
    try:
        node.start(os.path.join(tmp, "bitcoind"))
        node.rpc("createwallet", "w")
        address = node.rpc("getnewaddress", wallet="w")
        node.rpc("generatetoaddress", 101, address)
        start_height = node.rpc("getblockcount") - 20
        proxy = HostileNode(node.rpc_url, auth_passthrough=True).start()
        phases = (("deep", 4), ("huge", 4), ("endless", 3))
        proxy.set({"getblock": phases[0][0]})  # from the first block it reads
        datadir = os.path.join(tmp, "bitacora")
        os.makedirs(datadir, exist_ok=True)
        daemon = Daemon(options.bitacorad, datadir, [
            "-chain=regtest", "-rpcport=0", "-printtoconsole=0", f"-btcrpcconnect=127.0.0.1:{proxy.port}",
            f"-btcrpccookiefile={node.cookie_path}", "-btcwallet=w", "-anchor=0", "-btcpollinterval=200",
            f"-btcstartheight={start_height}", "-debug=btc"]).start()
        watch = RssWatch(daemon.proc.pid)
        api = Api(datadir, daemon)

        def btc():
            _alive(daemon, datadir, "bitcoind")
            return api.call("bitacora_status")["sources"]["btc"]

        details = []
        for i, (behaviour, answers) in enumerate(phases):
            if i > 0:
                # New blocks keep getblock asked for while the proxy is hostile.
                proxy.reset_counts()
                proxy.set({"getblock": behaviour})
                node.rpc("generatetoaddress", 2, address)

            def enough():
                btc()
                check(watch.peak_mib < RSS_BOUND_MIB, f"bitcoind {behaviour}: peak RSS {watch.peak_mib:.0f} MiB")
                return proxy.count() >= answers
            wait_for(enough, HOSTILE_PHASE_S, f"{answers} getblock answered {behaviour}")
            time.sleep(0.3)
            error = btc()["lastError"]
            check(error, f"bitcoind {behaviour}: no lastError in bitacora_status under a hostile getblock")
            details.append(f"getblock:{behaviour} x{proxy.count()} ({proxy.sent_mib():.0f} MiB sent; "
                           f"lastError {error[:90]!r})")
        hostile_peak = watch.peak_mib
        proxy.honest()
        tip = node.rpc("getblockcount")
        tip_hash = node.rpc("getbestblockhash")
        wait_for(lambda: (lambda s: s["state"] == "synced" and s["tipHeight"] == tip and s["tipHash"] == "0x" + tip_hash)(btc()),
                 RECOVERY_S, "the Bitcoin follower at the node's tip once the proxy is honest")
        peak = watch.peak_mib
        check(peak < RSS_BOUND_MIB, f"bitcoind: peak RSS {peak:.0f} MiB")
        _report("bitcoind_getblock_deep_huge_endless", f"alive, then synced to tip {tip}", hostile_peak,
                f"{peak:.0f} MiB after recovery; " + "; ".join(details))
    finally:
        if watch:
            watch.stop()
        if daemon:
            daemon.stop()
        if proxy:
            proxy.stop()
        node.stop()


if __name__ == "__main__":
    main([
        test_hostile_evm_node,
        test_hostile_bitcoind,
    ])
