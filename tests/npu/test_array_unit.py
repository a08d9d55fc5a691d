"""The systolic array unit (PE grid + skew + deskew, as the core and `synth npu --unit array` use
it) on Amaranth's simulator against numpy, and the `synth npu` unit options.

Seeds are printed; set DIESTACK_SEED to replay a failure.
"""

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from diestack.flows.cli import main
from diestack.hdl.npu.array import SystolicArray
from diestack.hdl.npu.pe import MUL_LATENCY


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


def _i8(rng, shape):
    """int8 values with the extremes -128 and 127 well represented."""
    v = rng.integers(-128, 128, shape)
    ends = rng.random(shape)
    v[ends < 0.15] = -128
    v[ends > 0.85] = 127
    return v.astype(np.int64)


@pytest.mark.parametrize("R,C,io_regs,dataflow", [(4, 4, True, "both"), (3, 5, False, "both"),
                                                 (5, 2, True, "ws")])
def test_systolic_array_ws_tiles(R, C, io_regs, dataflow):
    """WS through the unit with aligned rows: each tile shifts its weights (B rows R-1..0) in
    on the top edge, then streams its A rows on the left edge with the swap flag on the first
    row; the next tile's preload overlaps the current tile. Every output row is compared with
    numpy's A @ B for its tile (the arrival cycle is the documented latency)."""
    seed = _seed(7000 + 100 * R + 10 * C + io_regs)
    rng = np.random.default_rng(seed)
    dut = SystolicArray(R, C, dataflow, io_regs=io_regs)
    lat = 1 + R + C - 1 + MUL_LATENCY + (1 if io_regs else 0)   # A row in -> its sums on d
    tiles = []
    for _ in range(3):
        M = int(rng.integers(1, 3 * R))
        tiles.append((_i8(rng, (M, R)), _i8(rng, (R, C))))
    sched = {}         # cycle -> {"a": [(a, v, f)] * R, "b": [(b, sh)] * C}

    def at(c):
        return sched.setdefault(c, {"a": None, "b": None})
    t, pre = 2, 0
    expect = {}        # cycle -> (tile, row)
    for n, (A, B) in enumerate(tiles):
        for s in range(R):      # shadow chain: the first value shifted in ends at the bottom
            at(pre + s)["b"] = [(int(B[R - 1 - s][j]), 1) for j in range(C)]
        start = max(t, pre + R)
        for mm in range(A.shape[0]):
            at(start + mm)["a"] = [(int(A[mm][i]), 1, int(mm == 0)) for i in range(R)]
            expect[start + mm + lat] = (n, mm)
        t = start + A.shape[0]
        pre = start + R         # the swap wave has passed every row's shadow register
    last = max(expect) + 2
    got = {}

    async def tb(ctx):
        ctx.set(dut.os, 0)
        ctx.set(dut.drain, 0)
        for c in range(last):
            s = sched.get(c, {"a": None, "b": None})
            for i in range(R):
                a, v, f = s["a"][i] if s["a"] else (0, 0, 0)    # invalid rows carry 0
                ctx.set(dut.a[i].a, a)
                ctx.set(dut.a[i].v, v)
                ctx.set(dut.a[i].f, f)
            for j in range(C):
                b, sh = s["b"][j] if s["b"] else (int(rng.integers(-128, 128)), 0)
                ctx.set(dut.b[j].b, b)
                ctx.set(dut.b[j].sh, sh)
            if c in expect:
                got[c] = [ctx.get(dut.d[j]) for j in range(C)]
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for c, (n, mm) in expect.items():
        A, B = tiles[n]
        ref = (A @ B)[mm].tolist()
        assert got[c] == ref, f"seed={seed} tile {n} row {mm} (cycle {c}): {got[c]} != {ref}"


def test_synth_unit_option_errors(capsys):
    """A bad --unit or --freq is a usage error (exit 2) naming the option."""
    with pytest.raises(SystemExit) as e:
        main(["synth", "npu", "--rows", "4", "--cols", "4", "--unit", "pe"])
    assert e.value.code == 2
    assert "--unit" in capsys.readouterr().err
    rc = main(["synth", "npu", "--rows", "4", "--cols", "4", "--unit", "array", "--freq", "0"])
    assert rc == 2
    assert "--freq" in capsys.readouterr().err
