"""Raw commands (CONFIG, MVIN, MVOUT, PRELOAD, COMPUTE, FENCE) on the generated npu_top Verilog.

sim/npu/tb_raw.py tiles small GEMMs by hand through the AXI4-Lite command queue, in both
dataflows, with D loaded as an overwriting MVIN plus an accumulating one, COMPUTEs that
overwrite stale accumulator rows or accumulate (K tiles in WS, split K in OS), int32 and
requantized int8 MVOUT, FENCEs, an unknown opcode (ERROR[3]), and the interrupt both enabled
and disabled (IRQ_STATUS pending, then irq once enabled). External memory is cocotbext-axi's
AxiRam with random back-pressure on every channel. Results are compared exactly with numpy
(sim/npu/golden.py).
"""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from diestack.hdl.npu.config import NPUConfig
from diestack.sim import runner
from diestack.sim.npu import golden
from diestack.sim.npu.harness import verilog_for

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))


def _mat(rng, shape):
    if rng.random() < 0.3:
        return rng.choice(np.array([-128, 127], np.int8), shape)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def scenarios(rng, shapes):
    out = []
    for i, (m, n, k) in enumerate(shapes):
        d = None
        if rng.random() < 0.5:
            d = rng.integers(-2**31, 2**31, (m, n), dtype=np.int64).astype(np.int32)
        requant = None
        relu = False
        if rng.random() < 0.4:
            requant = (int(rng.integers(-2**15, 2**15)), int(rng.integers(0, 20)))
            relu = bool(rng.random() < 0.5)
        out.append(dict(a=_mat(rng, (m, k)), b=_mat(rng, (k, n)), d=d,
                        dataflow="ws" if i % 2 == 0 else "os", requant=requant, relu=relu,
                        pad=int(rng.choice([0, 1, 5, 16])), irq=bool(rng.random() < 0.7)))
    return out


def expected(s):
    c = golden.gemm(s["a"], s["b"], s["d"])
    if s["requant"] is not None:
        c = golden.requant(c, *s["requant"], relu=s["relu"])
    return c


def run_raw(cfg, scs, sim, seed, work, backpressure=0.3):
    b = runner.build([verilog_for(cfg)], "npu_top", sim=sim)
    job = Path(work) / "job"
    names = []
    for i, s in enumerate(scs):
        d = job / f"s{i}"
        d.mkdir(parents=True)
        np.save(d / "A.npy", s["a"])
        np.save(d / "B.npy", s["b"])
        if s["d"] is not None:
            np.save(d / "D.npy", s["d"])
        (d / "job.json").write_text(json.dumps({k: s[k] for k in
                                                ("dataflow", "requant", "relu", "pad", "irq")}))
        names.append(d.name)
    (job / "job.json").write_text(json.dumps({"scenarios": names, "seed": seed,
                                              "backpressure": backpressure}))
    runner.run(b, "diestack.sim.npu.tb_raw", extra_env={"DIESTACK_JOB": job},
               test_dir=Path(work) / "run", seed=seed).check()
    return [(np.load(job / n / "C.npy"), json.loads((job / n / "result.json").read_text()))
            for n in names]


def _check(scs, results, seed, sim):
    ops = set()
    for i, (s, (c, res)) in enumerate(zip(scs, results)):
        m, k = s["a"].shape
        n = s["b"].shape[1]
        what = (f"seed {seed} ({sim}): scenario {i}: {m}x{n}x{k} {s['dataflow']} "
                f"D={s['d'] is not None} requant={s['requant']} relu={s['relu']}")
        exp = expected(s)
        assert c.dtype == exp.dtype and c.shape == exp.shape, f"{what}: {c.dtype}{c.shape}"
        bad = [tuple(int(x) for x in ij) for ij in np.argwhere(c != exp)]
        assert bad == [], (f"{what}: {len(bad)} of {exp.size} differ, first C{bad[0]} = "
                           f"{c[bad[0]]}, expected {exp[bad[0]]}")
        assert res["guard_ok"], f"{what}: bytes around C were overwritten"
        ops |= {int(o) for o in res["opcodes"]}
    return ops


def _show(scs):
    print(f"seed {SEED} (DIESTACK_SEED to reproduce)")
    for s in scs:
        print(f"  {s['a'].shape[0]}x{s['b'].shape[1]}x{s['a'].shape[1]} {s['dataflow']} "
              f"D={s['d'] is not None} requant={s['requant']} relu={s['relu']} pad={s['pad']} "
              f"irq={s['irq']}")


def test_raw_commands_4x4_verilator(tmp_path):
    if "verilator" not in runner.available():
        pytest.skip("verilator is not installed")
    rng = np.random.default_rng(SEED)
    shapes = [(1, 1, 1), (6, 5, 9), (9, 7, 4), (4, 4, 4), (13, 9, 11), (2, 3, 12)]
    shapes += [tuple(int(x) for x in rng.integers(1, 14, 3)) for _ in range(2)]
    scs = scenarios(rng, shapes)
    _show(scs)
    res = run_raw(NPUConfig(rows=4, cols=4), scs, "verilator", SEED, tmp_path)
    ops = _check(scs, res, SEED, "verilator")
    assert ops >= {0, 2, 3, 4, 6}, f"opcodes used: {ops}"


def test_raw_commands_4x4_icarus(tmp_path):
    """Icarus is 4-state: raw COMPUTE/PRELOAD before any CONFIG, accumulator MVINs before the
    first array write and the first OS drain are the paths that used to see X there."""
    if "icarus" not in runner.available():
        pytest.skip("icarus is not installed")
    rng = np.random.default_rng(SEED + 1)
    scs = scenarios(rng, [(5, 6, 7), (6, 5, 9)])        # WS then OS
    for s in scs:                                       # D loaded before the first compute
        if s["d"] is None:
            s["d"] = rng.integers(-2**31, 2**31, (5, 6) if s["dataflow"] == "ws" else (6, 5),
                                  dtype=np.int64).astype(np.int32)
    _show(scs)
    _check(scs, run_raw(NPUConfig(rows=4, cols=4), scs, "icarus", SEED + 1, tmp_path),
           SEED + 1, "icarus")
