"""Run GEMMs on the generated ``npu_top`` Verilog: one simulator run for a list of GEMMs.

Used by the tests, ``diestack npu gemm``, ``diestack bench npu`` and the ``diestack run`` stage::

    results = run_gemms(NPUConfig(rows=8, cols=8), [Gemm(a, b, dataflow="ws")], sim="verilator")
    results[0].c, results[0].metrics

The testbench (:mod:`.tb_gemm`) only moves data; :func:`check` compares with the golden model.
"""

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...hdl.common.verilog import to_verilog
from ...hdl.npu.config import NPUConfig
from .. import runner
from . import golden

__all__ = ["Gemm", "GemmResult", "verilog_for", "run_gemms", "expected", "check"]


@dataclass
class Gemm:
    a: np.ndarray
    b: np.ndarray
    d: np.ndarray | None = None
    dataflow: str = "ws"
    requant: tuple | None = None      # (scale, shift)
    relu: bool = False
    pad: int = 0                      # extra bytes per row in memory (strides)


@dataclass
class GemmResult:
    gemm: Gemm
    c: np.ndarray
    metrics: dict = field(default_factory=dict)


def verilog_for(cfg, directory=None):
    """Write ``npu_top.v`` for ``cfg`` (into ``directory`` or a cache folder); return its path."""
    from ...hdl.npu.top import NPUTop
    text = to_verilog(NPUTop(cfg), "npu_top")
    if directory is None:
        import hashlib
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        directory = runner.cache_root() / "npu_verilog" / key
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "npu_top.v"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def expected(g):
    """The golden result of one GEMM (numpy, sim/npu/golden.py)."""
    c = golden.gemm(g.a, g.b, g.d)
    if g.requant is not None:
        c = golden.requant(c, g.requant[0], g.requant[1], relu=g.relu)
    return c


def check(result):
    """List of problems (empty when the result equals the golden model exactly)."""
    exp = expected(result.gemm)
    problems = []
    if result.c.shape != exp.shape or result.c.dtype != exp.dtype:
        return [f"result {result.c.dtype}{result.c.shape}, expected {exp.dtype}{exp.shape}"]
    bad = np.argwhere(result.c != exp)
    if bad.size:
        i, j = bad[0]
        problems.append(f"{len(bad)} of {exp.size} elements differ; first C[{i},{j}] = "
                        f"{result.c[i, j]}, expected {exp[i, j]}")
    if not result.metrics.get("guard_ok", True):
        problems.append("bytes outside C's rows were overwritten")
    return problems


def run_gemms(cfg, gemms, *, sim=None, seed=1, backpressure=0.0, workdir=None, waves=None,
              verilog=None):
    """Run ``gemms`` in one simulation of ``npu_top`` built for ``cfg``; return GemmResults."""
    if not isinstance(cfg, NPUConfig):
        raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
    vpath = Path(verilog) if verilog else verilog_for(cfg)
    b = runner.build([vpath], "npu_top", sim=sim, waves=waves)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="diestack-npu-"))
    job = work / "job"
    job.mkdir(parents=True, exist_ok=True)
    names = []
    for i, g in enumerate(gemms):
        d = job / f"g{i}"
        d.mkdir(exist_ok=True)
        np.save(d / "A.npy", np.asarray(g.a, np.int8))
        np.save(d / "B.npy", np.asarray(g.b, np.int8))
        if g.d is not None:
            np.save(d / "D.npy", np.asarray(g.d, np.int32))
        (d / "job.json").write_text(json.dumps({
            "dataflow": g.dataflow, "requant": list(g.requant) if g.requant else None,
            "relu": bool(g.relu), "pad": int(g.pad)}))
        names.append(d.name)
    (job / "job.json").write_text(json.dumps({"gemms": names, "seed": int(seed),
                                              "backpressure": float(backpressure)}))
    t0 = time.monotonic()
    res = runner.run(b, "diestack.sim.npu.tb_gemm", extra_env={"DIESTACK_JOB": job},
                     test_dir=work / "run", seed=seed, waves=waves)
    res.check()
    out = []
    for g, name in zip(gemms, names):
        d = job / name
        m = json.loads((d / "metrics.json").read_text())
        m["sim"] = b.sim
        out.append(GemmResult(g, np.load(d / "C.npy"), m))
    out_wall = time.monotonic() - t0
    for r in out:
        r.metrics["run_seconds"] = out_wall
    return out
