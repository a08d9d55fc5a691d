"""GEMM command on the generated npu_top Verilog against the numpy golden model.

Random GEMMs (M, N, K from 1 to ~300, non-multiples of the array, values including -128 and
127), WS and OS, int32 and requantized (+ReLU) outputs, +D, padded strides, random AXI
back-pressure. Several GEMMs share one simulator run; each design is built once (cached).
"""

import os
import random

import numpy as np
import pytest

from diestack.hdl.npu.config import NPUConfig
from diestack.sim import runner
from diestack.sim.npu.harness import Gemm, check, run_gemms

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))


def _mat(rng, shape, dtype=np.int8):
    if dtype == np.int32:
        return rng.integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32)
    kind = rng.integers(0, 3)
    if kind == 0:      # extremes only: -128 and 127
        return rng.choice(np.array([-128, 127], np.int8), shape)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def random_gemms(rng, shapes):
    out = []
    for i, (m, n, k) in enumerate(shapes):
        df = "ws" if i % 2 == 0 else "os"
        requant = None
        relu = False
        if rng.random() < 0.4:
            requant = (int(rng.integers(-2**15, 2**15)), int(rng.integers(0, 24)))
            relu = bool(rng.random() < 0.5)
        d = _mat(rng, (m, n), np.int32) if rng.random() < 0.3 else None
        if d is not None and rng.random() < 0.5:
            d = (d // 65536).astype(np.int32)
        out.append(Gemm(_mat(rng, (m, k)), _mat(rng, (k, n)), d, dataflow=df, requant=requant,
                        relu=relu, pad=int(rng.choice([0, 0, 3, 16]))))
    return out


def _run(cfg, gemms, sim, seed, tmp_path, backpressure):
    print(f"seed {seed} (DIESTACK_SEED to reproduce); {cfg.rows}x{cfg.cols} on {sim}")
    for g in gemms:
        print(f"  {g.a.shape[0]}x{g.b.shape[1]}x{g.a.shape[1]} {g.dataflow} requant={g.requant} "
              f"relu={g.relu} D={g.d is not None} pad={g.pad}")
    res = run_gemms(cfg, gemms, sim=sim, seed=seed, backpressure=backpressure,
                    workdir=tmp_path)
    for r in res:
        g = r.gemm
        assert r.metrics["macs"] == g.a.shape[0] * g.a.shape[1] * g.b.shape[1], \
            f"seed {seed}: MAC counter {r.metrics['macs']}"
        problems = check(r)
        assert not problems, (f"seed {seed}: {g.a.shape[0]}x{g.b.shape[1]}x{g.a.shape[1]} "
                              f"{g.dataflow}: " + "; ".join(problems))
    return res


def _need(sim):
    if sim not in runner.available():
        pytest.skip(f"{sim} is not installed")


def test_gemm_4x4_verilator(tmp_path):
    _need("verilator")
    rng = np.random.default_rng(SEED)
    shapes = [(1, 1, 1), (1, 7, 5), (9, 1, 6), (5, 6, 1), (300, 3, 5), (6, 290, 3),
              (5, 4, 63), (13, 17, 19), (33, 21, 40)]
    shapes += [tuple(int(x) for x in rng.integers(1, 48, 3)) for _ in range(3)]
    _run(NPUConfig(rows=4, cols=4), random_gemms(rng, shapes), "verilator", SEED, tmp_path, 0.3)


def test_gemm_4x4_icarus(tmp_path):
    """Icarus is 4-state. Regression: it runs an ``always @*`` only when one of its inputs
    changes, and yosys writes If-driven comb logic as such blocks, so parts of the core stayed X
    until their inputs first moved (the write-control word of the delay line, the accumulator
    write mask): X on m_axi rready (seed 1) and a +D load dropped before the first array write
    (seed 8). The first GEMMs therefore load D before any compute, in WS and then in OS; a
    watchdog in the testbench names any X on a control output of npu_top."""
    _need("icarus")
    rng = np.random.default_rng(SEED + 1)
    shapes = [(1, 1, 1), (6, 5, 9), (5, 7, 4)]
    gemms = random_gemms(rng, shapes)
    for g in gemms[:2]:
        if g.d is None:
            g.d = _mat(rng, (g.a.shape[0], g.b.shape[1]), np.int32)
    _run(NPUConfig(rows=4, cols=4), gemms, "icarus", SEED + 1, tmp_path, 0.3)


def test_gemm_4x4_long_k_verilator(tmp_path):
    """K > 16R: more K chunks than fit the scratchpad at the accumulator-capped block size.
    Regression: the tiler's divider lost its divisor after the start cycle, so Mb was always
    the accumulator cap and the A chunks of long-K blocks wrapped around the scratchpad."""
    _need("verilator")
    rng = np.random.default_rng(SEED + 7)
    gemms = [Gemm(_mat(rng, (4, 96)), _mat(rng, (96, 5)), dataflow="ws"),
             Gemm(_mat(rng, (9, 300)), _mat(rng, (300, 6)), dataflow="os"),
             Gemm(_mat(rng, (7, 68)), _mat(rng, (68, 3)), dataflow="ws", pad=3)]
    _run(NPUConfig(rows=4, cols=4), gemms, "verilator", SEED + 7, tmp_path, 0.2)


@pytest.mark.slow
def test_gemm_4x4_m_blocks_verilator(tmp_path):
    """More than one M block (Mb = floor(A_half / ceil(K/R)) = 109 rows in WS, 108 in OS at
    K = 300 on the default 4x4 config): both A halves and both accumulator halves are used.
    Two blocks in WS; three in WS and OS with N over two tiles, +D, requant."""
    _need("verilator")
    rng = np.random.default_rng(SEED + 8)
    gemms = [Gemm(_mat(rng, (111, 300)), _mat(rng, (300, 2)), dataflow="ws"),
             Gemm(_mat(rng, (230, 300)), _mat(rng, (300, 5)), dataflow="ws"),
             Gemm(_mat(rng, (230, 300)), _mat(rng, (300, 6)), _mat(rng, (230, 6), np.int32),
                  dataflow="os", requant=(int(rng.integers(1, 2**15)), 20), relu=True)]
    _run(NPUConfig(rows=4, cols=4), gemms, "verilator", SEED + 8, tmp_path, 0.2)


def test_seq_div_latches_operands():
    """The tiler's sequential divider against Python ``//``, with ``a``/``b`` driven only in
    the start cycle (as the tiler drives them) and garbage afterwards."""
    from amaranth.sim import Simulator
    from diestack.hdl.npu.loop import _SeqDiv

    rng = random.Random(SEED)
    print(f"seed {SEED}")
    cases = [(99, 4), (8184, 24), (8184, 17), (2016, 16), (0, 3), (2**20 - 1, 1), (5, 9)]
    cases += [(rng.randrange(2**20), rng.randrange(1, 2**12)) for _ in range(20)]
    dut = _SeqDiv(20)
    got = []

    async def tb(ctx):
        for a, b in cases:
            ctx.set(dut.start, 1)
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.a, rng.randrange(2**20))
            ctx.set(dut.b, rng.randrange(2**20))
            while not ctx.get(dut.done):
                await ctx.tick()
            got.append(ctx.get(dut.q))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for (a, b), q in zip(cases, got):
        assert q == a // b, f"seed {SEED}: {a} // {b} gave {q}"


@pytest.mark.parametrize("cfg", [
    NPUConfig(rows=3, cols=5, axi_data_width=64, sp_banks=1, acc_banks=1, sp_kib=8, acc_kib=4),
    NPUConfig(rows=5, cols=2, axi_data_width=256, sp_banks=8, acc_banks=4, dataflow="both"),
], ids=["3x5_axi64_1bank", "5x2_axi256_8banks"])
def test_gemm_configs_verilator(cfg, tmp_path):
    """Non-square arrays, the 64- and 256-bit AXI ports, one bank and many banks, a small
    scratchpad (several M blocks): random GEMMs in both dataflows against numpy."""
    _need("verilator")
    seed = SEED + cfg.rows * 10 + cfg.cols
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (cfg.rows, cfg.cols, 1), (2 * cfg.rows + 1, 3 * cfg.cols - 1, 37),
              (70, 11, 90)]
    shapes += [tuple(int(x) for x in rng.integers(1, 40, 3)) for _ in range(2)]
    _run(cfg, random_gemms(rng, shapes), "verilator", seed, tmp_path, 0.25)


@pytest.mark.slow
@pytest.mark.parametrize("rc", [(3, 5), (8, 8)])
def test_gemm_other_arrays_verilator(rc, tmp_path):
    _need("verilator")
    rng = np.random.default_rng(SEED + rc[0])
    shapes = [(1, 1, 1), (64, 48, 80), (17, 29, 31), (130, 9, 70), (7, 100, 33)]
    _run(NPUConfig(rows=rc[0], cols=rc[1]), random_gemms(rng, shapes), "verilator",
         SEED + rc[0], tmp_path, 0.2)
