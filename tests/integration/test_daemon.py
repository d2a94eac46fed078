"""bitacorad process behaviour: -help, -version, config errors, the data dir lock,
sd_notify (READY, STOPPING, WATCHDOG), SIGHUP log reopening and ordered shutdown."""

import concurrent.futures
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, NotifySocket, check, main, run, wait_for  # noqa: E402


def test_help_lists_every_option_with_default(options, tmp):
    result = run(options.bitacorad, "-help")
    check(result.returncode == 0, f"-help exited {result.returncode}")
    for option in ("-conf=<path>", "-datadir=<path>", "-chain=<string>", "-dbcache=<n>", "-debug=<value>", "-rebuild",
                   "-debuglogfile=<path>", "-printtoconsole", "-logratelimit", "-pid=<path>", "-version"):
        check(option in result.stdout, f"-help does not list {option}")
    check("(default: 64)" in result.stdout, "-help does not show the dbcache default")
    check(run(options.bitacorad, "-?").stdout == result.stdout, "-? differs from -help")


def test_version(options, tmp):
    result = run(options.bitacorad, "-version")
    check(result.returncode == 0 and result.stdout.startswith("Bitácora daemon version v"), result.stdout)


def test_config_errors_name_key_and_line(options, tmp):
    conf = os.path.join(tmp, "bitacora.conf")
    cases = [
        ("dbcache=64\n\nfrobnicate=1\n", "unknown option 'frobnicate'", "line 3"),
        ("# c\ndbcache=lots\n", "invalid value 'lots' for 'dbcache'", "line 2"),
        ("printtoconsole=perhaps\n", "invalid value 'perhaps' for 'printtoconsole'", "line 1"),
        ("[mainnet]\n", "unknown section [mainnet]", "line 1"),
    ]
    for text, message, line in cases:
        with open(conf, "w") as f:
            f.write(text)
        result = run(options.bitacorad, f"-datadir={tmp}")
        check(result.returncode == 1, f"{text!r}: exit code {result.returncode}")
        check(message in result.stderr and f"{conf} {line}" in result.stderr,
              f"{text!r}: stderr was {result.stderr!r}")
    os.remove(conf)
    result = run(options.bitacorad, f"-datadir={tmp}", "-debug=nonsense")
    check(result.returncode == 1 and "invalid value 'nonsense' for 'debug' (-debug)" in result.stderr, result.stderr)
    result = run(options.bitacorad, f"-datadir={tmp}", "-conf=missing.conf")
    check(result.returncode == 1 and "cannot read config file" in result.stderr, result.stderr)
    result = run(options.bitacorad, f"-datadir={os.path.join(tmp, 'nope')}")
    check(result.returncode == 1 and "does not exist" in result.stderr, result.stderr)


def test_start_notify_lock_sighup_and_sigterm(options, tmp):
    notify = NotifySocket(tmp)
    datadir = os.path.join(tmp, "data")
    os.mkdir(datadir)
    with open(os.path.join(datadir, "bitacora.conf"), "w") as f:
        f.write("debug=db\n[regtest]\ndbcache=16\n")
    daemon = Daemon(options.bitacorad, datadir, ["-chain=regtest", "-printtoconsole=0"],
                    env={"NOTIFY_SOCKET": notify.path}).start()
    try:
        notify.wait_for("READY=1")
        netdir = os.path.join(datadir, "regtest")
        log_path = os.path.join(netdir, "debug.log")
        check(os.path.exists(os.path.join(netdir, "ledger", "CURRENT")), "no RocksDB database in the chain's data dir")
        with open(os.path.join(netdir, "bitacorad.pid")) as f:
            check(int(f.read()) == daemon.proc.pid, "pid file does not hold the daemon's pid")
        log = open(log_path).read()
        for line in ("Bitácora daemon version", "Chain: regtest", "Debug logging: db", "Initialization done"):
            check(line in log, f"debug.log lacks {line!r}")

        # A second daemon on the same data dir is refused with a clear message.
        second = run(options.bitacorad, f"-datadir={datadir}", "-chain=regtest")
        check(second.returncode == 1, "second instance did not fail")
        check("Cannot obtain a lock on data directory" in second.stderr, second.stderr)

        # logrotate: rename, SIGHUP, and the daemon writes a new file.
        os.rename(log_path, log_path + ".1")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(log_path) and "Log file reopened" in open(log_path).read(), 10,
                 "a new debug.log after SIGHUP")
        check("SIGHUP received" in open(log_path + ".1").read(), "the rotated file lacks the SIGHUP line")

        daemon.signal(signal.SIGTERM)
        check(daemon.wait() == 0, "non-zero exit after SIGTERM")
        notify.wait_for("STOPPING=1", 5)
        log = open(log_path).read()
        order = ["SIGTERM received", "Shutdown: in progress", "Shutdown: closing database", "Shutdown: done"]
        positions = [log.find(entry) for entry in order]
        check(all(p >= 0 for p in positions) and positions == sorted(positions),
              f"shutdown lines missing or out of order: {positions}")
        check(not os.path.exists(os.path.join(netdir, "bitacorad.pid")), "pid file left behind")
        check(daemon.stdout() == "", "printtoconsole=0 still wrote to stdout")
    finally:
        daemon.stop()
        notify.close()

    # The same data dir opens again after a clean stop.
    restarted = Daemon(options.bitacorad, datadir, ["-chain=regtest"]).start()
    try:
        wait_for(lambda: "Opened database" in restarted.stdout(), 30, "the database to reopen")
        restarted.signal(signal.SIGINT)
        check(restarted.wait() == 0, "non-zero exit after SIGINT")
    finally:
        restarted.stop()


def test_watchdog_pings(options, tmp):
    notify = NotifySocket(tmp)
    daemon = Daemon(options.bitacorad, tmp, ["-nodebuglogfile"],
                    env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"}).start()
    try:
        notify.wait_for("READY=1")
        wait_for(lambda: notify.count("WATCHDOG=1") >= 3, 10, "three WATCHDOG=1 pings")
        check("watchdog every 100 ms" in daemon.stdout(), "start-up log does not mention the watchdog")
        check(not os.path.exists(os.path.join(tmp, "debug.log")), "-nodebuglogfile still wrote debug.log")
    finally:
        daemon.stop()
        notify.close()


def test_rebuild_reports_the_state_hash(options, tmp):
    daemon = Daemon(options.bitacorad, tmp, ["-chain=regtest", "-rebuild", "-nodebuglogfile"]).start()
    try:
        wait_for(lambda: "Initialization done" in daemon.stdout(), 30, "start-up with -rebuild")
        out = daemon.stdout()
        check("Rebuilt projections from 0 events" in out, out)
        line = next(l for l in out.splitlines() if "Projection state hash before rebuild" in l)
        before = line.split("before rebuild ")[1].split(",")[0]
        after = line.split(", after ")[1]
        check(len(before) == 66 and before.startswith("0x") and before == after, f"state hash changed: {line}")
        check(os.path.exists(os.path.join(tmp, "regtest", "checkpoint.key")), "no checkpoint key created")
        check(oct(os.stat(os.path.join(tmp, "regtest", "checkpoint.key")).st_mode & 0o777) == "0o600",
              "checkpoint key is not mode 0600")
    finally:
        daemon.stop()


def run_bytes(binary, *args, timeout_s=20, address_space_max=4 << 30):
    """run() with bytes out, and an address-space cap so that a regression that
    reads without bound fails here instead of exhausting the machine's memory."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (address_space_max, address_space_max))
    return subprocess.run([binary, *args], capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                          preexec_fn=cap)


def test_config_file_bounds_bom_binary_and_datadir(options, tmp):
    # -conf=/dev/zero: refused at the byte cap, at once.
    started = time.monotonic()
    result = run_bytes(options.bitacorad, f"-datadir={tmp}", "-conf=/dev/zero")
    check(result.returncode == 1 and b"is larger than 1048576 bytes" in result.stderr,
          f"-conf=/dev/zero: exit {result.returncode}, stderr {result.stderr[:300]!r}")
    check(time.monotonic() - started < 10, "-conf=/dev/zero took too long")

    conf = os.path.join(tmp, "bitacora.conf")
    with open(conf, "wb") as f:
        f.write(b"# line\n" + b"x" * 70000 + b"=1\n")
    result = run_bytes(options.bitacorad, f"-datadir={tmp}")
    check(result.returncode == 1 and b"line 2 is longer than 65536 bytes" in result.stderr, result.stderr[:300])

    # A byte order mark (as Notepad writes) is not part of the first key.
    with open(conf, "wb") as f:
        f.write(b"\xef\xbb\xbfdbcache=lots\n")
    result = run_bytes(options.bitacorad, f"-datadir={tmp}")
    check(result.returncode == 1 and b"invalid value 'lots' for 'dbcache'" in result.stderr and
          f"{conf} line 1".encode() in result.stderr, result.stderr)

    # Binary bytes in the file or on the command line are quoted escaped.
    with open(conf, "wb") as f:
        f.write(b"\x01\xfe\x1b[2J=1\n")
    result = run_bytes(options.bitacorad, f"-datadir={tmp}")
    check(b"unknown option '\\x01\\xfe\\x1b[2J'" in result.stderr, result.stderr)
    result2 = run_bytes(options.bitacorad, f"-datadir={tmp}", b"-\x1b]0;pwned\x07=1")
    check(b"unknown option '\\x1b]0;pwned\\x07'" in result2.stderr, result2.stderr)
    for out in (result.stderr, result2.stderr):
        check(not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", out), f"raw control bytes in {out!r}")
        out.decode("utf-8")  # no invalid UTF-8 either
    os.remove(conf)

    # A data dir that is a file is named as such.
    plain = os.path.join(tmp, "plainfile")
    open(plain, "w").close()
    result = run(options.bitacorad, f"-datadir={plain}")
    check(result.returncode == 1 and "is not a directory" in result.stderr, result.stderr)
    # Also when the config file names it (-conf outside the default data dir, in $HOME).
    with open(conf, "w") as f:
        f.write(f"datadir={plain}\n")
    result = run(options.bitacorad, f"-conf={conf}", env={"HOME": tmp})
    check(result.returncode == 1 and f"Specified data directory \"{plain}\" is not a directory" in result.stderr,
          result.stderr)
    os.remove(conf)


def test_urls_and_inline_comments(options, tmp):
    # On the command line there are no comments: the URL is refused at start-up.
    result = run(options.bitacorad, f"-datadir={tmp}", "-evmrpc=http://127.0.0.1:1 # local node")
    check(result.returncode == 1 and "for 'evmrpc' (-evmrpc)" in result.stderr, result.stderr)
    result = run(options.bitacorad, f"-datadir={tmp}", "-evmrpc=http://127.0.0.1:99999")
    check(result.returncode == 1 and "for 'evmrpc'" in result.stderr, result.stderr)
    # In the file, a # starts a comment (as in bitcoind); a # in a password is refused.
    conf = os.path.join(tmp, "bitacora.conf")
    with open(conf, "w") as f:
        f.write("chain=regtest # the local chain\ndbcache=16 # MiB\n")
    daemon = Daemon(options.bitacorad, tmp, ["-nodebuglogfile", "-rpcport=0"]).start()
    try:
        wait_for(lambda: "Initialization done" in daemon.stdout(), 30, "start-up with inline comments")
        check("Chain: regtest" in daemon.stdout(), daemon.stdout())
    finally:
        daemon.stop()
    with open(conf, "w") as f:
        f.write("btcrpcpassword=secret#1\n")
    result = run(options.bitacorad, f"-datadir={tmp}")
    check(result.returncode == 1 and "using # in btcrpcpassword can be ambiguous" in result.stderr
          and "secret" not in result.stderr, result.stderr)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_file_descriptor_limit_sizes_rpc_connections(options, tmp):
    proc_args = ["prlimit", "--nofile=64:64", options.bitacorad, f"-datadir={tmp}", "-chain=regtest", "-rpcport=0",
                 "-nodebuglogfile", "-rpcopenreads=1"]
    out_path = os.path.join(tmp, "stdout.txt")
    proc = subprocess.Popen(proc_args, stdout=open(out_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        log = lambda: open(out_path).read()  # noqa: E731
        port = int(wait_for(lambda: re.search(r"RPC server on port (\d+)", log()), 30, "the RPC server").group(1))
        reduced = re.search(r"Reducing -rpcmaxconnections from 256 to (\d+), because of system limitations "
                            r"\(file descriptor limit 64\)", log())
        check(reduced, f"no warning that -rpcmaxconnections was lowered: {log()}")
        limit = int(reduced.group(1))
        check(4 <= limit <= 30, f"connection limit {limit}")
        check("leaves RocksDB" in log(), "no warning that RocksDB's table cache does not fit")
        url = f"http://127.0.0.1:{port}/health"
        with urllib.request.urlopen(url, timeout=10) as answer:
            check(answer.status == 200, f"/health answered {answer.status}")
        # Three times the limit in concurrent requests: each is answered (200, or 503 when
        # full), and the daemon stays within its descriptors.
        def fetch(_):
            try:
                with urllib.request.urlopen(url, timeout=30) as answer:
                    return answer.status
            except urllib.error.HTTPError as e:
                return e.code
        with concurrent.futures.ThreadPoolExecutor(max_workers=3 * limit) as pool:
            statuses = list(pool.map(fetch, range(3 * limit)))
        check(set(statuses) <= {200, 503} and 200 in statuses, f"answers under load: {statuses}")
        check(proc.poll() is None, "bitacorad died under load")
        check(open_fds(proc.pid) < 64, f"{open_fds(proc.pid)} descriptors open")
        # libevent's own stderr format ("[warn] ...") never appears: its log goes through the logger.
        check(not re.search(r"^\[(warn|err|msg|debug)\] ", log(), re.M), "libevent wrote past the logger")
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    # Too few descriptors for even a few connections: a clear start-up error.
    result = run("prlimit", "--nofile=30:30", options.bitacorad, f"-datadir={tmp}", "-chain=regtest", "-nodebuglogfile")
    check(result.returncode == 1 and "Not enough file descriptors available: the limit is 30" in result.stderr,
          result.stderr + result.stdout)


if __name__ == "__main__":
    main([test_help_lists_every_option_with_default, test_version, test_config_errors_name_key_and_line,
          test_start_notify_lock_sighup_and_sigterm, test_watchdog_pings, test_rebuild_reports_the_state_hash,
          test_config_file_bounds_bom_binary_and_datadir, test_urls_and_inline_comments,
          test_file_descriptor_limit_sizes_rpc_connections])
