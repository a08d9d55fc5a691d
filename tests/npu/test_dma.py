"""DMA (hdl/npu/dma.py) on Amaranth's simulator: random 2-D mvin/mvout against numpy.

A small AXI4 subordinate model (in-order, random ready/valid gaps, checks bursts: aligned beats,
<= 256 beats, no 4 KiB crossing) serves a random memory image. Expectations come from numpy
slicing of that image, written from the transfer rules in the DMA docstring:

- mvin: the ordered list of local-row writes (kind, address, bytes, accumulate) and done tags;
- mvout: the whole memory image afterwards (bytes outside the rows must stay untouched).

Odd sizes on purpose: 6-byte scratchpad rows, 24-byte accumulator rows, 8-byte beats.

The same random commands also run on the generated Verilog (Verilator and Icarus) against
cocotbext-axi's AxiRam with random pauses on all five channels: tests/npu/tb_dma.py.
"""

import json
import os
import random
from dataclasses import asdict

import numpy as np
import pytest
from amaranth.sim import Simulator

from diestack.hdl.common.verilog import to_verilog
from diestack.hdl.npu.config import NPUConfig
from diestack.hdl.npu.dma import Dma
from diestack.sim import runner

from .tb_dma import MEM, expected_mvin, random_rd_cmd, random_wr_cmd

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))
CFG = NPUConfig(rows=4, cols=6, axi_data_width=64, max_reads_in_flight=3)


def _run(seed, n_rd, n_wr):
    cfg = CFG
    W = cfg.axi_bytes
    dut = Dma(cfg)
    rng = random.Random(seed)
    image = np.frombuffer(rng.randbytes(MEM + 8192), np.uint8).copy()
    rd_cmds = [random_rd_cmd(rng, cfg, i % 4) for i in range(n_rd)]
    wr_cmds = [random_wr_cmd(rng, cfg) for _ in range(n_wr)]
    exp_writes = [w for c in rd_cmds for w in expected_mvin(image, c, cfg)]
    acc_table = {}

    def acc_row(addr, mode):
        if addr not in acc_table:
            acc_table[addr] = rng.randbytes(cfg.acc_row_bytes)
        b = acc_table[addr]
        return b[:cfg.cols] + bytes(cfg.acc_row_bytes - cfg.cols) if mode else b

    exp_mem = image.copy()
    for c in wr_cmds:
        eb = 1 if c["mode"] else 4
        for r in range(c["rows"]):
            aa = (c["acc_addr"] + r * c["acc_step"]) & ((1 << cfg.acc_addr_width) - 1)
            row = np.frombuffer(acc_row(aa, c["mode"]), np.uint8)[:c["elems"] * eb]
            a = c["mem_addr"] + r * c["mem_stride"]
            exp_mem[a:a + len(row)] = row
    mem = image.copy()
    got, tags, state = [], [], {"wr_done": 0, "cycles": 0}
    pr = random.Random(seed + 1)

    async def tb(ctx):
        ax = dut.m_axi
        ri = wi = 0
        beats, aws, wdata_q, bq, pend = [], [], [], [], []
        for cyc in range(200000):
            state["cycles"] = cyc
            # drive
            ctx.set(dut.rd_cmd.valid, ri < n_rd)
            if ri < n_rd:
                for k, v in rd_cmds[ri].items():
                    ctx.set(getattr(dut.rd_cmd.payload, k), v)
            ctx.set(dut.wr_cmd.valid, wi < n_wr)
            if wi < n_wr:
                for k, v in wr_cmds[wi].items():
                    ctx.set(getattr(dut.wr_cmd.payload, k), v)
            ctx.set(dut.sp_w.ready, pr.random() < 0.7)
            ctx.set(dut.acc_w.ready, pr.random() < 0.7)
            ctx.set(dut.acc_rd_req.ready, pr.random() < 0.8)
            ctx.set(ax.arready, pr.random() < 0.7)
            ctx.set(ax.awready, pr.random() < 0.7)
            ctx.set(ax.wready, pr.random() < 0.7)
            r_show = bool(beats) and pr.random() < 0.7
            ctx.set(ax.rvalid, r_show)
            if r_show:
                ctx.set(ax.rdata, beats[0][0])
                ctx.set(ax.rlast, beats[0][1])
            b_show = bool(bq) and pr.random() < 0.7
            ctx.set(ax.bvalid, b_show)
            a_show = bool(pend) and pend[0][0] <= cyc and pr.random() < 0.8
            ctx.set(dut.acc_rd.valid, a_show)
            if a_show:
                ctx.set(dut.acc_rd.payload.data, int.from_bytes(pend[0][1], "little"))
            # sample
            rd_fire = ri < n_rd and ctx.get(dut.rd_cmd.ready)
            wr_fire = wi < n_wr and ctx.get(dut.wr_cmd.ready)
            if ctx.get(ax.arvalid) and ctx.get(ax.arready):
                a, n = ctx.get(ax.araddr), ctx.get(ax.arlen) + 1
                assert a % W == 0 and (a % 4096) + n * W <= 4096 and n <= 256, (seed, a, n)
                for i in range(n):
                    beats.append((int.from_bytes(mem[a + i * W:a + (i + 1) * W].tobytes(),
                                                 "little"), i == n - 1))
            if r_show and ctx.get(ax.rready):
                beats.pop(0)
            if ctx.get(ax.awvalid) and ctx.get(ax.awready):
                a, n = ctx.get(ax.awaddr), ctx.get(ax.awlen) + 1
                assert a % W == 0 and (a % 4096) + n * W <= 4096 and n <= 256, (seed, a, n)
                aws.append([a, n])
            if ctx.get(ax.wvalid) and ctx.get(ax.wready):
                wdata_q.append((ctx.get(ax.wdata), ctx.get(ax.wstrb), ctx.get(ax.wlast)))
            while aws and wdata_q:      # apply beats in order once their burst address is known
                d, s, last = wdata_q.pop(0)
                a = aws[0][0]
                for i in range(W):
                    if (s >> i) & 1:
                        mem[a + i] = (d >> (8 * i)) & 0xFF
                aws[0][0] += W
                aws[0][1] -= 1
                assert (aws[0][1] == 0) == bool(last), (seed, "wlast")
                if last:
                    aws.pop(0)
                    bq.append(1)
            if b_show:
                bq.pop(0)
            if ctx.get(dut.sp_w.valid) and ctx.get(dut.sp_w.ready):
                p = dut.sp_w.payload
                assert ctx.get(p.mask) == (1 << cfg.sp_row_bytes) - 1
                got.append(("sp", ctx.get(p.addr),
                            ctx.get(p.data).to_bytes(cfg.sp_row_bytes, "little"), 0))
            if ctx.get(dut.acc_w.valid) and ctx.get(dut.acc_w.ready):
                p = dut.acc_w.payload
                got.append(("acc", ctx.get(p.addr),
                            ctx.get(p.data).to_bytes(cfg.acc_row_bytes, "little"),
                            ctx.get(p.accumulate)))
            if ctx.get(dut.rd_done):
                tags.append(ctx.get(dut.rd_done_tag))
            if ctx.get(dut.wr_done):
                state["wr_done"] += 1
            if ctx.get(dut.acc_rd_req.valid) and ctx.get(dut.acc_rd_req.ready):
                q = dut.acc_rd_req.payload
                pend.append((cyc + pr.randint(1, 4), acc_row(ctx.get(q.addr), ctx.get(q.mode))))
            if a_show and ctx.get(dut.acc_rd.ready):
                pend.pop(0)
            ri += rd_fire
            wi += wr_fire
            await ctx.tick()
            if len(tags) == n_rd and state["wr_done"] == n_wr:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, exp_writes, tags, [c["tag"] for c in rd_cmds], mem, exp_mem, state


def test_dma_random_mvin_mvout():
    print(f"seed {SEED} (DIESTACK_SEED to reproduce)")
    got, exp, tags, exp_tags, mem, exp_mem, state = _run(SEED, 24, 14)
    assert tags == exp_tags, f"seed {SEED}: done tags {tags}"
    assert state["wr_done"] == 14, f"seed {SEED}: {state['wr_done']} write commands done"
    assert len(got) == len(exp), f"seed {SEED}: {len(got)} local writes, expected {len(exp)}"
    for i, (g, e) in enumerate(zip(got, exp)):
        assert g == e, f"seed {SEED}: local write {i}: got {g}, expected {e}"
    bad = np.nonzero(mem != exp_mem)[0]
    assert bad.size == 0, f"seed {SEED}: {bad.size} bytes differ, first at {bad[0]:#x}"


def _cocotb_dma(sim, tmp_path, seed, n_rd, n_wr, pause=0.3, timeout=60000):
    if sim not in runner.available():
        pytest.skip(f"{sim} is not installed")
    vdir = tmp_path / "v"
    vdir.mkdir()
    (vdir / "dma_top.v").write_text(to_verilog(Dma(CFG), "dma_top"))
    b = runner.build([vdir / "dma_top.v"], "dma_top", sim=sim)
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"config": asdict(CFG), "seed": seed,
                                              "n_rd": n_rd, "n_wr": n_wr, "pause": pause,
                                              "timeout": timeout}))
    runner.run(b, "diestack.tests.npu.tb_dma", extra_env={"DIESTACK_JOB": job},
               test_dir=tmp_path / "run", seed=seed).check()


def test_dma_cocotb_axiram_verilator(tmp_path):
    """The same random mvin/mvout checks on the generated Verilog, with cocotbext-axi's AxiRam
    (random pauses on all five channels) as the memory: tests/npu/tb_dma.py."""
    print(f"seed {SEED} (DIESTACK_SEED to reproduce)")
    _cocotb_dma("verilator", tmp_path, SEED, 30, 16)


def test_dma_cocotb_axiram_icarus(tmp_path):
    print(f"seed {SEED + 1} (DIESTACK_SEED to reproduce)")
    _cocotb_dma("icarus", tmp_path, SEED + 1, 16, 10)
