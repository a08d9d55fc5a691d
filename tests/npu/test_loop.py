"""GEMM tiler (hdl/npu/loop.py): block sizing and overlap, checked on npu_top in Verilator.

Every GEMM is compared exactly with the numpy golden model, and the compute span (first MAC to
last MAC, ``compute_cycles``) is bounded by an analytic model written from the core's
documented timing (hdl/npu/core.py): a WS COMPUTE streams one A row per cycle and back-to-back
tiles run without bubbles when a COMPUTE has at least 2R + 4 rows, so the span of a GEMM is
about ``M * ceil(N/C) * ceil(K/R)`` row cycles plus a little per block boundary. A tiler that
leaves a sliver M block (one COMPUTE of a few rows per K chunk and N tile) or waits for the
core to go idle at every block boundary exceeds the bound.
"""

import math
import os
import random

import numpy as np
import pytest

from diestack.hdl.npu.config import NPUConfig
from diestack.sim import runner
from diestack.sim.npu.harness import Gemm, check, run_gemms

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))


def _need(sim):
    if sim not in runner.available():
        pytest.skip(f"{sim} is not installed")


def _mat(rng, shape, dtype=np.int8):
    if dtype == np.int32:
        return rng.integers(-2**24, 2**24, shape, dtype=np.int64).astype(np.int32)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def ws_row_cycles(m, n, k, r, c):
    """Rows streamed through the array by a WS GEMM: every (M row, N tile, K chunk) once."""
    return m * math.ceil(n / c) * math.ceil(k / r)


def _run_checked(cfg, gemms, seed, tmp_path):
    print(f"seed {seed} (DIESTACK_SEED to reproduce); {cfg.rows}x{cfg.cols}")
    res = run_gemms(cfg, gemms, sim="verilator", seed=seed, workdir=tmp_path)
    for r in res:
        g = r.gemm
        shape = f"{g.a.shape[0]}x{g.b.shape[1]}x{g.a.shape[1]} {g.dataflow}"
        problems = check(r)
        assert not problems, f"seed {seed}: {shape}: " + "; ".join(problems)
        assert r.metrics["macs"] == g.a.size * g.b.shape[1], \
            f"seed {seed}: {shape}: MAC counter {r.metrics['macs']}"
        print(f"  {shape}: cycles {r.metrics['cycles']}, compute span "
              f"{r.metrics['compute_cycles']}, counters {r.metrics['counters']}")
    return res


def test_tiler_balanced_blocks_ws_verilator(tmp_path):
    """4x4, K = 300 (75 K chunks): the largest WS block that fits is 109 rows (A half of the
    scratchpad, 8176 rows, / 75), so M = 110 and M = 219 need 2 and 3 blocks. Balanced blocks
    (55+55, 73+73+73) stream without bubbles; a 1-row sliver block would add about
    (2R + 4 - 1) * ceil(N/C) * 75 cycles. A third GEMM has +D: the D rows enter the
    accumulator through its write port, which the array holds while it computes, so each
    block start waits for its D load (up to 2 cycles per row: one-beat DMA rows) and the bound
    grows by that."""
    _need("verilator")
    rng = np.random.default_rng(SEED)
    cfg = NPUConfig(rows=4, cols=4)
    gemms = [Gemm(_mat(rng, (110, 300)), _mat(rng, (300, 8)), dataflow="ws"),
             Gemm(_mat(rng, (219, 300)), _mat(rng, (300, 6)), dataflow="ws",
                  requant=(int(rng.integers(1, 2**12)), 18), relu=True),
             Gemm(_mat(rng, (110, 300)), _mat(rng, (300, 5)), _mat(rng, (110, 5), np.int32),
                  dataflow="ws")]
    res = _run_checked(cfg, gemms, SEED, tmp_path)
    for r in res:
        m, k = r.gemm.a.shape
        n = r.gemm.b.shape[1]
        rows = ws_row_cycles(m, n, k, cfg.rows, cfg.cols)
        mblocks = math.ceil(m / 109)
        nblocks = mblocks * math.ceil(n / cfg.cols)
        # per block boundary: at most one PRELOAD + pipeline restart (2R + 4) of slack
        bound = rows + nblocks * (2 * cfg.rows + 4) + 64
        if r.gemm.d is not None:
            bound += nblocks * (2 * math.ceil(m / mblocks) + 32)
        span = r.metrics["compute_cycles"]
        assert span <= bound, (f"seed {SEED}: {m}x{n}x{k} WS compute span {span} > {bound} "
                               f"(row cycles {rows}, {nblocks} blocks)")


def test_tiler_os_blocks_verilator(tmp_path):
    """4x4 OS. K = 300: one K chunk, two balanced M blocks (26 R-row groups fit, M = 113 is 29
    groups: 15 + 14), two N tiles, +D; its compute span is bounded. K = 2100: two K chunks
    (Kc <= 2048 rows), so the two B slots are reused, freed by the started-chunk counter (no
    wait for core idle); checked for correctness only: with 2 R-row groups per block it is
    bound by the B loads (2048 one-beat DMA rows per chunk), not by the tiler."""
    _need("verilator")
    rng = np.random.default_rng(SEED + 1)
    cfg = NPUConfig(rows=4, cols=4)
    gemms = [Gemm(_mat(rng, (113, 300)), _mat(rng, (300, 7)), _mat(rng, (113, 7), np.int32),
                  dataflow="os"),
             Gemm(_mat(rng, (9, 2100)), _mat(rng, (2100, 5)), dataflow="os", pad=3)]
    res = _run_checked(cfg, gemms, SEED + 1, tmp_path)
    for r in res[:1]:
        m, k = r.gemm.a.shape
        n = r.gemm.b.shape[1]
        # OS: each R-row group of each N tile streams K steps plus an R-cycle fill (core.py)
        groups = math.ceil(m / cfg.rows) * math.ceil(n / cfg.cols)
        kchunks = math.ceil(k / 2048)      # os_kc_max = sp_rows / 8 = 2048 on this config
        bound = groups * (k + kchunks * (cfg.rows + 8)) + 64
        span = r.metrics["compute_cycles"]
        assert span <= bound, f"seed {SEED + 1}: {m}x{n}x{k} OS compute span {span} > {bound}"
