"""Core (scratchpad + array + accumulator + requant + command sequencer) on Amaranth's simulator.

Each test writes A/B tiles into the scratchpad (padding lanes filled with random garbage, which
the core must mask with k_valid/n_valid), initialises the accumulator with garbage or D through
``acc_w``, issues PRELOAD/COMPUTE commands, reads the accumulator back in int32 and requantized
int8 modes (with random back-pressure) and compares with the numpy golden model
(sim/npu/golden.py). Seeds are printed; set DIESTACK_SEED to replay.
"""

import math
import os
import random
import time

import numpy as np
import pytest
from amaranth.sim import Simulator

from diestack.hdl.common.verilog import to_verilog
from diestack.hdl.npu.config import NPUConfig
from diestack.hdl.npu.core import Core, Dataflow, ExecOp
from diestack.sim.npu import golden


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


def _pack8(vals):
    return sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(vals))


def _pack32(vals):
    return sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(vals))


async def _load_program(ctx, dut, p, rd_ready):
    """Idle every input stream, then write the program's scratchpad rows and accumulator
    initial rows through the core's write ports."""
    for s in (dut.sp_w, dut.acc_w, dut.exe, dut.acc_rd_req):
        ctx.set(s.valid, 0)
    ctx.set(dut.acc_rd.ready, rd_ready)
    for addr, row in sorted(p.sp.items()):
        ctx.set(dut.sp_w.valid, 1)
        ctx.set(dut.sp_w.payload, {"addr": addr, "data": _pack8(row), "mask": (1 << len(row)) - 1})
        await ctx.tick()
    ctx.set(dut.sp_w.valid, 0)
    for addr, vals, accum in p.acc_init:
        ctx.set(dut.acc_w.valid, 1)
        ctx.set(dut.acc_w.payload, {"addr": addr, "data": _pack32(vals), "accumulate": accum})
        await ctx.tick().until(dut.acc_w.ready)
    ctx.set(dut.acc_w.valid, 0)


def _unpack32(word, n):
    out = []
    for i in range(n):
        v = (word >> (32 * i)) & 0xFFFFFFFF
        out.append(v - (1 << 32) if v >> 31 else v)
    return np.array(out, dtype=np.int64)


def _unpack8(word, n):
    out = []
    for i in range(n):
        v = (word >> (8 * i)) & 0xFF
        out.append(v - 256 if v >> 7 else v)
    return np.array(out, dtype=np.int64)


class Program:
    """What to do on the core, and what the accumulator should hold afterwards."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        self.sp = {}                 # addr -> list of row bytes
        self.acc_init = []           # (addr, list of C int32, accumulate)
        self.cmds = []               # dicts for exec_cmd_layout
        self.expect = golden.AccModel(cfg.cols)   # expected accumulator contents
        self._sp_next = 0
        self._acc_next = 0

    def sp_alloc(self, n):
        base = self._sp_next
        self._sp_next += n
        assert self._sp_next <= self.cfg.sp_rows, "test program does not fit the scratchpad"
        return base

    def acc_alloc(self, n):
        base = self._acc_next
        self._acc_next += n
        assert self._acc_next <= self.cfg.acc_rows, "test program does not fit the accumulator"
        return base

    def garbage_row(self):
        return [self.rng.randint(-128, 127) for _ in range(self.cfg.sp_row_bytes)]

    def sp_row(self, addr, vals):
        row = self.garbage_row()
        row[:len(vals)] = [int(v) for v in vals]
        assert addr not in self.sp and 0 <= addr < self.cfg.sp_rows, addr
        self.sp[addr] = row

    def acc_write(self, addr, vals, accumulate=False):
        self.acc_init.append((addr, [int(v) for v in vals], int(accumulate)))
        self.expect.write(addr, vals, accumulate=accumulate)

    def cmd(self, **kw):
        full = dict(op=ExecOp.COMPUTE, dataflow=Dataflow.WS, a_addr=0, b_addr=0, a_stride=0,
                    acc_addr=0, rows=1, k_valid=self.cfg.rows, n_valid=self.cfg.cols, accumulate=0)
        full.update(kw)
        self.cmds.append({k: int(v) for k, v in full.items()})


def rand_int8(rng, shape):
    """int8 values with the extremes well represented."""
    a = np.array([rng.choice((-128, 127, rng.randint(-128, 127), rng.randint(-128, 127)))
                  for _ in range(int(np.prod(shape)))], dtype=np.int64)
    return a.reshape(shape)


def add_ws_gemm(p, M, K, N, *, use_d):
    """C[MxN] (+D) = A @ B with WS tiles (expectation goes into p.expect)."""
    cfg, rng = p.cfg, p.rng
    R, C = cfg.rows, cfg.cols
    A, B = rand_int8(rng, (M, K)), rand_int8(rng, (K, N))
    kt, nt = math.ceil(K / R), math.ceil(N / C)
    a_base, b_base, acc_base = p.sp_alloc(kt * M), p.sp_alloc(kt * nt * R), p.acc_alloc(nt * M)
    for t in range(kt):
        for m in range(M):
            p.sp_row(a_base + t * M + m, A[m, t * R:(t + 1) * R])
        for u in range(nt):
            for r in range(R):
                k = t * R + r
                p.sp_row(b_base + (t * nt + u) * R + r, B[k, u * C:(u + 1) * C] if k < K else [])
    D = np.array([[rng.randint(-2**31, 2**31 - 1) for _ in range(N)] for _ in range(M)], dtype=np.int64)
    ref = golden.gemm(A, B, D if use_d else None).astype(np.int64)
    for u in range(nt):
        nv = min(C, N - u * C)
        for m in range(M):
            row = [rng.randint(-2**31, 2**31 - 1) for _ in range(C)]   # garbage beyond n_valid
            if use_d:
                row[:nv] = D[m, u * C:u * C + nv]
            p.acc_write(acc_base + u * M + m, row)
        for t in range(kt):
            kv = min(R, K - t * R)
            p.cmd(op=ExecOp.PRELOAD, dataflow=Dataflow.WS, b_addr=b_base + (t * nt + u) * R,
                  k_valid=kv, n_valid=nv)
            p.cmd(op=ExecOp.COMPUTE, dataflow=Dataflow.WS, a_addr=a_base + t * M, rows=M,
                  acc_addr=acc_base + u * M, k_valid=kv, n_valid=nv,
                  accumulate=1 if (use_d or t > 0) else 0)
        for m in range(M):
            exp = p.expect.read(acc_base + u * M + m)
            exp[:nv] = ref[m, u * C:u * C + nv]
            p.expect.rows[acc_base + u * M + m] = exp
    return M * N * K


def add_ws_repeat(p, M, *, times=3, replaced_preload=False):
    """One PRELOAD, then ``times`` back-to-back COMPUTEs (no new weights) of M rows each, all
    accumulating into the same accumulator rows: with M = 1 or 2 the accumulator sees writes to
    the same row 1 or 2 cycles apart (the read-modify-write forwarding case)."""
    cfg, rng = p.cfg, p.rng
    R, C = cfg.rows, cfg.cols
    K, N = rng.randint(1, R), rng.randint(1, C)
    B = rand_int8(rng, (K, N))
    As = [rand_int8(rng, (M, K)) for _ in range(times)]
    a_base, b_base, acc_base = p.sp_alloc(times * M), p.sp_alloc(R), p.acc_alloc(M)
    for r in range(R):
        p.sp_row(b_base + r, B[r] if r < K else [])
    for t, A in enumerate(As):
        for m in range(M):
            p.sp_row(a_base + t * M + m, A[m])
    D = rand_int8(rng, (M, N)) * 1000
    for m in range(M):
        p.acc_write(acc_base + m, list(D[m]) + [rng.randint(-2**31, 2**31 - 1) for _ in range(C - N)])
    if replaced_preload:         # a PRELOAD replaced by a second one before any COMPUTE
        junk = p.sp_alloc(R)
        for r in range(R):
            p.sp_row(junk + r, [])
        p.cmd(op=ExecOp.PRELOAD, b_addr=junk, k_valid=R, n_valid=C)
    p.cmd(op=ExecOp.PRELOAD, b_addr=b_base, k_valid=K, n_valid=N)
    for t in range(times):
        p.cmd(op=ExecOp.COMPUTE, a_addr=a_base + t * M, rows=M, acc_addr=acc_base, k_valid=K,
              n_valid=N, accumulate=1)
    ref = D + sum(golden.gemm(A, B).astype(np.int64) for A in As)
    for m in range(M):
        exp = p.expect.read(acc_base + m)
        exp[:N] = ref[m]
        p.expect.rows[acc_base + m] = exp


def add_os_gemm(p, M, K, N, *, stride_extra, split):
    """C[MxN] = A @ B with OS tiles (optionally K split in two accumulating commands)."""
    cfg, rng = p.cfg, p.rng
    R, C = cfg.rows, cfg.cols
    A, B = rand_int8(rng, (M, K)), rand_int8(rng, (K, N))
    mt, nt = math.ceil(M / R), math.ceil(N / C)
    ng = math.ceil(K / R)
    stride = R + stride_extra
    a_base, b_base = p.sp_alloc(mt * ng * stride), p.sp_alloc(nt * K)
    acc_base = p.acc_alloc(mt * nt * R)
    for s in range(mt):
        base = a_base + s * ng * stride
        for g in range(ng):
            for i in range(R):
                m = s * R + i
                p.sp_row(base + g * stride + i, A[m, g * R:(g + 1) * R] if m < M else [])
    for u in range(nt):
        for k in range(K):
            p.sp_row(b_base + u * K + k, B[k, u * C:(u + 1) * C])
    ref = golden.gemm(A, B).astype(np.int64)
    for s in range(mt):
        mv = min(R, M - s * R)
        for u in range(nt):
            nv = min(C, N - u * C)
            acc = acc_base + (s * nt + u) * R
            for i in range(R):
                p.acc_write(acc + i, [rng.randint(-2**31, 2**31 - 1) for _ in range(C)])
            a_addr = a_base + s * ng * stride
            if split and ng > 1:
                g1 = rng.randint(1, ng - 1)
                parts = [(0, g1 * R), (g1 * R, K)]
            else:
                parts = [(0, K)]
            for n_, (k0, k1) in enumerate(parts):
                p.cmd(op=ExecOp.COMPUTE, dataflow=Dataflow.OS, a_addr=a_addr + (k0 // R) * stride,
                      a_stride=stride, b_addr=b_base + u * K + k0, rows=k1 - k0, acc_addr=acc,
                      k_valid=mv, n_valid=nv, accumulate=1 if n_ < 0 + len(parts) and n_ > 0 else 0)
            for i in range(mv):
                exp = p.expect.read(acc + i)
                exp[:nv] = ref[s * R + i, u * C:u * C + nv]
                p.expect.rows[acc + i] = exp
    return M * N * K


def run_program(p, *, reads=True, rq_params=None, seed=0):
    """Run ``p`` on a fresh Core; check the accumulator; return the mac_active trace."""
    cfg = p.cfg
    dut = Core(cfg)
    rng = random.Random(seed)
    trace = []
    result = {}
    addrs = sorted(p.expect.rows)
    reqs = []
    for a in addrs:
        reqs.append(dict(addr=a, mode=0, scale=0, shift=0, relu=0))
        if rq_params is not False:
            scale = rng.choice((1, -1, rng.randint(-2**31, 2**31 - 1), rng.randint(-1000, 1000)))
            shift = rng.choice((0, 1, 63, rng.randint(0, 40)))
            reqs.append(dict(addr=a, mode=1, scale=scale, shift=shift, relu=rng.randint(0, 1)))

    async def monitor(ctx):
        cyc = 0
        async for _, _, ma, u in ctx.tick().sample(dut.mac_active, dut.useful_macs_inc):
            cyc += 1
            if ma:
                trace.append((cyc, u))

    async def main(ctx):
        await _load_program(ctx, dut, p, rd_ready=0)
        t0 = time.time()
        for c in p.cmds:
            ctx.set(dut.exe.valid, 1)
            ctx.set(dut.exe.payload, c)
            await ctx.tick().until(dut.exe.ready)
        ctx.set(dut.exe.valid, 0)
        await ctx.tick()
        n = 0
        while not ctx.get(dut.idle):
            await ctx.tick()
            n += 1
            assert n < 100000, "core never became idle"
        if not reads:
            return
        out = []
        i = 0
        while len(out) < len(reqs):
            if i < len(reqs):
                ctx.set(dut.acc_rd_req.valid, 1)
                ctx.set(dut.acc_rd_req.payload, reqs[i])
            else:
                ctx.set(dut.acc_rd_req.valid, 0)
            rdy = rng.random() < 0.7
            ctx.set(dut.acc_rd.ready, rdy)
            _, _, rr, rv, rd = await ctx.tick().sample(dut.acc_rd_req.ready, dut.acc_rd.valid,
                                                       dut.acc_rd.payload.data)
            if i < len(reqs) and rr:
                i += 1
            if rv and rdy:
                out.append(rd)
        result["out"] = out

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(main)
    sim.run()
    if reads:
        for req, word in zip(reqs, result["out"]):
            exp = p.expect.read(req["addr"])
            if req["mode"] == 0:
                got = _unpack32(word, cfg.cols)
                assert np.array_equal(got, exp), \
                    f"seed={seed} acc row {req['addr']}: got {got.tolist()} expected {exp.tolist()}"
            else:
                got = _unpack8(word, cfg.cols)
                want = golden.requant(exp, req["scale"], req["shift"], bool(req["relu"]))
                assert np.array_equal(got, want.astype(np.int64)), \
                    f"seed={seed} requant row {req['addr']} {req}: got {got.tolist()} expected {want.tolist()}"
                assert word >> (8 * cfg.cols) == 0, f"seed={seed} upper bits of an int8 read not zero"
    return trace


@pytest.mark.parametrize("rows,cols", [(4, 4), (3, 5)])
def test_ws_tiles(rows, cols):
    seed = _seed(1000 + rows * 10 + cols)
    rng = random.Random(seed)
    cfg = NPUConfig(rows, cols, "both", sp_kib=2, acc_kib=2)
    p = Program(cfg, rng)
    M, K, N = rng.randint(1, 9), rng.randint(2 * rows + 1, 3 * rows - 1), rng.randint(cols + 1, 2 * cols - 1)
    print(f"WS {rows}x{cols}: M={M} K={K} N={N}")
    add_ws_gemm(p, M, K, N, use_d=False)
    add_ws_gemm(p, rng.randint(1, 6), rng.randint(1, rows), rng.randint(1, cols), use_d=True)
    add_ws_repeat(p, 1)
    add_ws_repeat(p, 2, replaced_preload=True)
    trace = run_program(p, seed=seed)
    assert sum(u for _, u in trace) == sum(
        c["rows"] * c["k_valid"] * c["n_valid"] for c in p.cmds if c["op"] == ExecOp.COMPUTE), \
        f"seed={seed} useful MAC count"


@pytest.mark.parametrize("rows,cols", [(4, 4), (3, 5)])
def test_os_tiles(rows, cols):
    seed = _seed(2000 + rows * 10 + cols)
    rng = random.Random(seed)
    cfg = NPUConfig(rows, cols, "both", sp_kib=2, acc_kib=2)
    p = Program(cfg, rng)
    M, K, N = rng.randint(rows + 1, 2 * rows - 1), rng.randint(2 * rows + 1, 3 * rows + 2), \
        rng.randint(cols + 1, 2 * cols - 1)
    print(f"OS {rows}x{cols}: M={M} K={K} N={N}")
    add_os_gemm(p, M, K, N, stride_extra=rng.randint(0, 2), split=True)
    # small K (shorter than the drain) and a single-row edge tile
    add_os_gemm(p, 1, rng.randint(1, 2), rng.randint(1, cols),
                stride_extra=0, split=False)
    run_program(p, seed=seed)


def test_mixed_dataflows():
    """WS, then OS, then WS again on one 'both' core (the mode switch drains the array)."""
    seed = _seed(3000)
    rng = random.Random(seed)
    cfg = NPUConfig(4, 4, "both", sp_kib=2, acc_kib=2)
    p = Program(cfg, rng)
    add_ws_gemm(p, 5, 6, 7, use_d=False)
    add_os_gemm(p, 6, 9, 5, stride_extra=1, split=False)
    add_ws_gemm(p, 3, 4, 4, use_d=True)
    run_program(p, seed=seed, rq_params=False)


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_single_dataflow_builds(dataflow):
    """A core synthesized for one dataflow only still computes its tiles (WS with the DSP
    multiplier variant)."""
    seed = _seed(4000)
    rng = random.Random(seed)
    cfg = NPUConfig(3, 4, dataflow, sp_kib=2, acc_kib=2,
                    pe_multiplier="dsp" if dataflow == "ws" else "lut")
    p = Program(cfg, rng)
    if dataflow == "ws":
        add_ws_gemm(p, 6, 5, 6, use_d=False)
    else:
        add_os_gemm(p, 5, 7, 6, stride_extra=0, split=False)
    run_program(p, seed=seed, rq_params=False)


def test_ws_back_to_back_bubbles():
    """4x4, M=32: back-to-back WS tiles (PRELOAD of t+1 between COMPUTEs) have <= 2 bubbles."""
    seed = _seed(5000)
    rng = random.Random(seed)
    cfg = NPUConfig(4, 4, "ws", sp_kib=2, acc_kib=2)
    p = Program(cfg, rng)
    M = 32
    add_ws_gemm(p, M, 16, 8, use_d=False)
    trace = run_program(p, seed=seed, reads=True, rq_params=False)
    tiles = sum(1 for c in p.cmds if c["op"] == ExecOp.COMPUTE)
    span = trace[-1][0] - trace[0][0] + 1
    active = len(trace)
    print(f"tiles={tiles} active={active} span={span} bubbles={span - active}")
    assert active == tiles * M
    assert span - active <= 2 * (tiles - 1), f"seed={seed}: {span - active} bubble cycles over {tiles} tiles"


@pytest.mark.parametrize("rc", [(8, 8), pytest.param((16, 16), marks=pytest.mark.slow)])
def test_core_converts_to_verilog(rc):
    """8x8 (16x16 in the slow set) cores convert in < 30 s of CPU; with the default LUT PE
    multipliers the only '*' operators are requant's 4 16x16 partial products per column."""
    def cpu():      # CPU seconds of this process and its children (the machine is shared)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    t0, w0 = cpu(), time.time()
    cfg = NPUConfig(*rc)
    v = to_verilog(Core(cfg), "npu_core")
    dt = cpu() - t0
    print(f"{rc}: {len(v.splitlines())} lines, {dt:.1f} s CPU, {time.time() - w0:.1f} s wall")
    assert dt < 30
    R, C = rc
    assert v.count(" * ") == 4 * C, f"{v.count(' * ')} '*' operators for {R}x{C}"


@pytest.mark.parametrize("mul,expect", [("dsp", 15), ("lut", 0)])
def test_array_multipliers_shared(mul, expect):
    """The PE array needs one multiplier per PE with both dataflows built: R*C '*' operators
    with DSP multipliers, none with the shift-and-add (LUT) ones; the core adds 4 per column
    (requant's 16x16 partial products)."""
    from diestack.hdl.npu.array import PEArray
    v = to_verilog(PEArray(3, 5, "both", mul), "pe_array")
    assert v.count(" * ") == expect


@pytest.mark.slow
@pytest.mark.parametrize("n", range(8))
def test_random_programs(n):
    """Slow sweep: random array shapes, dataflow mixes and GEMM sizes."""
    seed = _seed(9000 + n)
    rng = random.Random(seed)
    R, C = rng.randint(2, 5), rng.randint(2, 5)
    cfg = NPUConfig(R, C, "both", sp_kib=4, acc_kib=4)
    p = Program(cfg, rng)
    for _ in range(3):
        M, K, N = rng.randint(1, 3 * R), rng.randint(1, 3 * R), rng.randint(1, 3 * C)
        print(f"{R}x{C} M={M} K={K} N={N}")
        if rng.random() < 0.5:
            add_ws_gemm(p, M, K, N, use_d=rng.random() < 0.5)
        else:
            add_os_gemm(p, M, K, N, stride_extra=rng.randint(0, 2), split=rng.random() < 0.5)
    run_program(p, seed=seed)


def test_started_landed_pulses():
    """The command buffer's report (core.py): ``started`` pulses once per command, in order,
    with its tag; ``landed`` once per COMPUTE, in order, with its tag, after that command
    started; and at the last ``landed`` pulse every accumulator row already reads its final
    value (read at once, no wait for ``idle``), WS and OS, checked against numpy."""
    seed = _seed(6000)
    rng = random.Random(seed)
    cfg = NPUConfig(4, 4, "both", sp_kib=2, acc_kib=2)
    p = Program(cfg, rng)
    add_ws_gemm(p, 6, 9, 6, use_d=False)
    add_os_gemm(p, 5, 7, 5, stride_extra=1, split=True)
    add_ws_repeat(p, 1)
    for c in p.cmds:
        c["tag"] = rng.randrange(8)
    computes = [i for i, c in enumerate(p.cmds) if c["op"] == ExecOp.COMPUTE]
    dut = Core(cfg)
    log = {"started": [], "landed": [], "out": []}
    # the rows written last (the last COMPUTE's, last row first) are read first
    last = p.cmds[computes[-1]]
    first = [last["acc_addr"] + r for r in reversed(range(last["rows"]))]
    addrs = first + [a for a in sorted(p.expect.rows) if a not in first]

    async def main(ctx):
        await _load_program(ctx, dut, p, rd_ready=1)
        await ctx.tick()
        issued, req_i, cyc = 0, 0, 0
        while len(log["out"]) < len(addrs):
            cyc += 1
            assert cyc < 20000, f"seed={seed}: stuck ({len(log['landed'])} landed)"
            ctx.set(dut.exe.valid, issued < len(p.cmds))
            if issued < len(p.cmds):
                ctx.set(dut.exe.payload, p.cmds[issued])
            reading = len(log["landed"]) == len(computes)
            ctx.set(dut.acc_rd_req.valid, reading and req_i < len(addrs))
            if req_i < len(addrs):
                ctx.set(dut.acc_rd_req.payload, dict(addr=addrs[req_i], mode=0, scale=0, shift=0, relu=0))
            (_, _, er, st, stt, ld, ldt, rr, rv, rd) = await ctx.tick().sample(
                dut.exe.ready, dut.started, dut.started_tag, dut.landed, dut.landed_tag,
                dut.acc_rd_req.ready, dut.acc_rd.valid, dut.acc_rd.payload.data)
            if issued < len(p.cmds) and er:
                issued += 1
            if st:
                log["started"].append((cyc, stt))
            if ld:
                log["landed"].append((cyc, ldt))
            if reading and req_i < len(addrs) and rr:
                req_i += 1
            if rv:
                log["out"].append(rd)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    sim.run()
    assert [t for _, t in log["started"]] == [c["tag"] for c in p.cmds], f"seed={seed}: started tags"
    assert [t for _, t in log["landed"]] == [p.cmds[i]["tag"] for i in computes], \
        f"seed={seed}: landed tags"
    for (lc, _), i in zip(log["landed"], computes):
        assert lc > log["started"][i][0], f"seed={seed}: command {i} landed before it started"
    for a, word in zip(addrs, log["out"]):
        got, exp = _unpack32(word, cfg.cols), p.expect.read(a)
        assert np.array_equal(got, exp), \
            f"seed={seed}: acc row {a} read at the last landed pulse: {got.tolist()} != {exp.tolist()}"
