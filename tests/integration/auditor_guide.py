"""The standalone verifier that docs/auditor-guide.md carries, taken out of the guide and
run, so that the integration suites check the very program auditors are told to copy.

    extract_verifier(repo_root) -> path of verify_bundle.py, written from the guide's one ```python block
    run_verifier(repo_root, bundle_path) -> (exit_code, stdout)
    run_consistency(repo_root, json_path) -> (exit_code, stdout)
    load_verifier(repo_root) -> the verifier as a module (verify_consistency, verify_bundle, ...)

A module for the suites; it has no test runner of its own."""

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

GUIDE = os.path.join("docs", "auditor-guide.md")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")


class GuideError(AssertionError):
    pass


def python_blocks(text):
    """[(first line number, source)] of every fenced block whose info string is python."""
    blocks, fence, start, lines, info = [], None, 0, [], ""
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            m = _FENCE.match(line)
            if m:
                fence, info, start, lines = m.group(1), m.group(2).lower(), number, []
        elif re.match(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
            if info in ("python", "python3", "py"):
                blocks.append((start, "\n".join(lines) + "\n"))
            fence = None
        else:
            lines.append(line)
    if fence is not None:
        raise GuideError(f"{GUIDE}: the code block opened at line {start} is never closed")
    return blocks


def extract_verifier(repo_root):
    """Writes the guide's single python block to a temporary verify_bundle.py and returns its path."""
    guide = os.path.join(repo_root, GUIDE)
    with open(guide, encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    if len(blocks) != 1:
        where = ", ".join(f"line {start}" for start, _ in blocks) or "none"
        raise GuideError(f"{guide} must hold exactly one ```python block (the verifier); found {len(blocks)}: {where}")
    start, source = blocks[0]
    try:
        compile(source, f"{guide} (block at line {start})", "exec")
    except SyntaxError as e:
        raise GuideError(f"the verifier in {guide} (block at line {start}) does not compile: {e}") from e
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    directory = os.path.join(tempfile.gettempdir(), f"bitacora-auditor-guide-{os.getuid()}-{digest}")
    path = os.path.join(directory, "verify_bundle.py")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(partial, path)
    return path


def _run(repo_root, args):
    path = extract_verifier(repo_root)
    out = subprocess.run([PYTHON, path, *args], capture_output=True, text=True, timeout=120)
    if "Traceback (most recent call last)" in out.stderr:
        raise GuideError(f"the guide's verifier crashed on {args}: {out.stderr.strip()}")
    return out.returncode, out.stdout.strip()


def run_verifier(repo_root, bundle_path):
    """(exit code, stdout): 0 and "VALID: ..." or 1 and "INVALID: <first failed check>"."""
    return _run(repo_root, [bundle_path])


def run_consistency(repo_root, json_path):
    """The verifier's --consistency mode on {"firstSize","firstRoot","secondSize","secondRoot","path"}
    (ledger_getConsistencyProof's answer, or an anchor's consistency member)."""
    return _run(repo_root, ["--consistency", json_path])


def load_verifier(repo_root):
    """The verifier imported as a module, e.g. load_verifier(REPO).verify_consistency(...)."""
    spec = importlib.util.spec_from_file_location("verify_bundle", extract_verifier(repo_root))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
