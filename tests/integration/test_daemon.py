"""bitacorad process behaviour: -help, -version, config errors, the data dir lock,
sd_notify (READY, STOPPING, WATCHDOG), SIGHUP log reopening and ordered shutdown."""

import os
import signal
import sys

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
        check(len(before) == 64 and before == after, f"state hash changed: {line}")
        check(os.path.exists(os.path.join(tmp, "regtest", "checkpoint.key")), "no checkpoint key created")
        check(oct(os.stat(os.path.join(tmp, "regtest", "checkpoint.key")).st_mode & 0o777) == "0o600",
              "checkpoint key is not mode 0600")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main([test_help_lists_every_option_with_default, test_version, test_config_errors_name_key_and_line,
          test_start_notify_lock_sighup_and_sigterm, test_watchdog_pings, test_rebuild_reports_the_state_hash])
