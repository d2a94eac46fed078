"""Shared helpers for the integration suites: temporary data dirs, processes that
are always stopped, and a systemd notify socket to watch sd_notify messages.

Only the standard library (and Debian's python3-zmq where a suite needs ZMQ)."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback


class TestFailure(AssertionError):
    pass


class Skipped(Exception):
    """Raised by a test that cannot run here (e.g. the double's hooks on a real node)."""


SKIP_EXIT = 77  # meson's exit code for a skipped test


def double_only(test):
    """Marks a test that needs the bitcoind double's hooks. Such tests form their own
    meson test (--group double), so that on a real node that whole test is reported
    skipped instead of passing a part that never ran."""
    test.double_only = True
    return test


def skip_unless_double(why):
    if os.environ.get("BITCOIND"):
        raise Skipped(f"real bitcoind ({os.environ['BITCOIND']}): {why}")


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TestFailure(f"timed out after {timeout_s} s waiting for {what}")


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return self.messages
            self.messages.extend(data.decode().split("\n"))

    def wait_for(self, entry, timeout_s=30):
        wait_for(lambda: entry in self.poll(), timeout_s, f"sd_notify {entry}")

    def count(self, entry):
        return self.poll().count(entry)

    def close(self):
        self.sock.close()


class Daemon:
    """A bitacorad process that is always stopped when the test ends."""

    def __init__(self, binary, datadir, args=(), env=None):
        self.binary = binary
        self.datadir = datadir
        self.args = list(args)
        self.env = env
        self.proc = None
        self.stdout_path = os.path.join(datadir, "stdout.txt")
        self.stderr_path = os.path.join(datadir, "stderr.txt")

    def start(self):
        full_env = dict(os.environ)
        full_env.update(self.env or {})
        self.proc = subprocess.Popen(
            [self.binary, f"-datadir={self.datadir}", *self.args],
            stdout=open(self.stdout_path, "w"), stderr=open(self.stderr_path, "w"),
            env=full_env, stdin=subprocess.DEVNULL)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout_s=30):
        return self.proc.wait(timeout=timeout_s)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def stdout(self):
        with open(self.stdout_path) as f:
            return f.read()


def run(binary, *args, timeout_s=30, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout_s,
                          env=full_env, stdin=subprocess.DEVNULL)


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """A real anvil on 127.0.0.1 at a free port, stopped when the test ends."""

    def __init__(self, contracts_dir, directory, extra_args=()):
        self.binary = os.path.join(contracts_dir, "node_modules", ".bin", "anvil")
        self.directory = directory
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        for _ in range(5):
            self.port = free_port()
            log = open(os.path.join(self.directory, f"anvil-{self.port}.log"), "w")
            self.proc = subprocess.Popen(
                [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--gas-limit", "10000000000",
                 "--prune-history", "256", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise TestFailure("anvil did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(tests):
    """Runs each test function with a fresh temporary directory; prints a summary.
    Exits 77 (meson's "skipped") when every test that ran was skipped, and 1 when some
    were skipped beside others that passed: a partial skip would be counted as a pass,
    so such a test belongs in its own group (see double_only)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bitacorad", help="the bitacorad binary")
    parser.add_argument("--contracts", help="the contracts/ folder (forge artifacts, npm binaries, tools)")
    parser.add_argument("-k", dest="only", default=None, help="run tests whose name contains this")
    parser.add_argument("--group", choices=("all", "node", "double"), default="all",
                        help="node: the tests any bitcoind passes; double: those needing the double's hooks")
    options = parser.parse_args()
    passed = failed = skipped = 0
    for test in tests:
        if options.only and options.only not in test.__name__:
            continue
        is_double = getattr(test, "double_only", False)
        if (options.group == "node" and is_double) or (options.group == "double" and not is_double):
            continue
        directory = tempfile.mkdtemp(prefix="bitacora-it-")
        started = time.monotonic()
        try:
            if is_double:
                skip_unless_double("the test needs the double's double_* hooks")
            test(options, directory)
            passed += 1
            print(f"PASS {test.__name__} ({time.monotonic() - started:.1f} s)", flush=True)
        except Skipped as why:
            skipped += 1
            print(f"SKIP {test.__name__}: {why}", flush=True)
        except Exception:  # report every failure, keep going
            failed += 1
            print(f"FAIL {test.__name__}", flush=True)
            traceback.print_exc()
        finally:
            if os.environ.get("BITACORA_KEEP_TMP"):
                print(f"kept {directory}", flush=True)
            else:
                shutil.rmtree(directory, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if failed:
        sys.exit(1)
    if skipped and passed:
        print("some tests were skipped beside others that passed: meson would count the skip as a pass; "
              "give the skipped ones their own group", flush=True)
        sys.exit(1)
    if not passed and not skipped:
        print("no test ran (check -k and --group)", flush=True)
    sys.exit(0 if passed else SKIP_EXIT)
