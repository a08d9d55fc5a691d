"""Scheduler + bank timers on the Amaranth simulator, checked by the JEDEC device model.

Random host requests (32 B or 64 B = two back-to-back bursts, reads and writes, a few rows per bank
so that hits, misses and conflicts all occur) are offered with random gaps; every command the
scheduler issues goes into ``sim/hbm/device.py`` (an independent timing checker, strict), and a
Python scoreboard checks that every burst is issued exactly once at its own address and
direction, the two halves of a request in order, and that ``col_first`` marks exactly one column
command per request (the per-request row hit/miss/conflict counting of the controller).
Seed: $DIESTACK_SEED (printed).
"""

import os
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from diestack.hdl.hbm.bank import (COL_RD, COL_RDA, COL_WR, COL_WRA, ROW_ACT, ROW_PRE, ROW_PREA,
                                   BankTimers, bits_for)
from diestack.hdl.hbm.scheduler import Scheduler
from diestack.hdl.hbm.timing import resolve
from diestack.sim.hbm.device import HBMDevice

SEED = int(os.environ.get("DIESTACK_SEED", "20261130"))
print(f"HBM scheduler tests: seed {SEED} (set DIESTACK_SEED to override)")

TAG_BITS = 8
ROW_NAMES = {ROW_ACT: "ACT", ROW_PRE: "PRE", ROW_PREA: "PREA"}
COL_NAMES = {COL_RD: "RD", COL_WR: "WR", COL_RDA: "RDA", COL_WRA: "WRA"}


class _Pair(wiring.Component):
    """Scheduler and bank timers wired as in ``hdl/hbm/controller.py`` (no refresh)."""

    def __init__(self, timing, **kw):
        self._t, self._kw = timing, kw
        bb = bits_for(timing.banks)
        super().__init__({
            "req_valid": In(1), "req_ready": Out(1), "req_we": In(1), "req_bank": In(bb),
            "req_row": In(bits_for(timing.rows)), "req_col": In(bits_for(timing.columns)),
            "req_tag": In(TAG_BITS),
            "row_valid": Out(1), "row_cmd": Out(3), "row_bank": Out(bb),
            "row_addr": Out(bits_for(timing.rows)),
            "col_valid": Out(1), "col_cmd": Out(3), "col_bank": Out(bb),
            "col_addr": Out(bits_for(timing.columns)), "col_tag": Out(TAG_BITS),
            "col_first": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.banks = banks = BankTimers(self._t)
        m.submodules.sched = sch = Scheduler(self._t, tag_bits=TAG_BITS, **self._kw)
        for n in ("open", "open_row", "act_ok", "pre_ok", "rd_ok", "wr_ok", "refpb_ok",
                  "prea_ok", "refab_ok"):
            m.d.comb += getattr(sch, n).eq(getattr(banks, n))
        for n in ("row_valid", "row_cmd", "row_bank", "row_addr", "col_valid", "col_cmd",
                  "col_bank"):
            m.d.comb += getattr(banks, n).eq(getattr(sch, n))
        for n in ("req_valid", "req_we", "req_bank", "req_row", "req_col", "req_tag"):
            m.d.comb += getattr(sch, n).eq(getattr(self, n))
        for n in ("req_ready", "row_valid", "row_cmd", "row_bank", "row_addr", "col_valid",
                  "col_cmd", "col_bank", "col_addr", "col_tag", "col_first"):
            m.d.comb += getattr(self, n).eq(getattr(sch, n))
        return m


def _requests(rng, t, n):
    """``n`` host requests over unique bursts (no same-burst hazards): (we, bank, row, col, beats)."""
    used, out = set(), []
    while len(out) < n:
        bank, row = rng.randrange(t.banks), rng.randrange(3)
        beats = rng.choice((1, 2, 2, 2))
        col = rng.randrange(0, t.columns, 2)
        bursts = {(bank, row, col + k) for k in range(beats)}
        if bursts & used:
            continue
        used |= bursts
        out.append((rng.random() < 0.3, bank, row, col, beats))
    return out


def _split(t, flat):
    bpg, bgs = t.banks_per_group, t.bank_groups
    return flat // (bpg * bgs), (flat // bpg) % bgs, flat % bpg


@pytest.mark.parametrize("page", ["open", "closed", "adaptive"])
def test_scheduler_random_requests(page):
    seed = SEED + {"open": 0, "closed": 1, "adaptive": 2}[page]
    rng = random.Random(seed)
    t = resolve("hbm2")
    reqs = _requests(rng, t, 90)
    dut = _Pair(t, depth=16, page=page, refresh="allbank")
    dev = HBMDevice(t, strict=True, check_refresh=False)
    # bursts in offer order: (tag, request index, half, we, bank, row, col)
    bursts = []
    for k, (we, bank, row, col, beats) in enumerate(reqs):
        for h in range(beats):
            bursts.append((len(bursts) % (1 << TAG_BITS), k, h, we, bank, row, col + h))
    issued = {}             # burst index -> cycle of its column command
    firsts = []
    gaps = [rng.random() < 0.35 for _ in reqs]     # idle cycles before a request

    async def bench(ctx):
        nxt, cyc, idle_left = 0, 0, 0
        inflight = {}        # tag -> burst index
        while len(issued) < len(bursts):
            assert cyc < 40 * len(bursts), f"stalled at cycle {cyc}, {len(issued)} issued (seed {seed})"
            offer = nxt < len(bursts) and idle_left == 0
            if offer:
                tag, k, h, we, bank, row, col = bursts[nxt]
                ctx.set(dut.req_valid, 1)
                ctx.set(dut.req_we, we)
                ctx.set(dut.req_bank, bank)
                ctx.set(dut.req_row, row)
                ctx.set(dut.req_col, col)
                ctx.set(dut.req_tag, tag)
            else:
                ctx.set(dut.req_valid, 0)
                idle_left = max(0, idle_left - 1)
            accepted = offer and ctx.get(dut.req_ready)
            if ctx.get(dut.row_valid):
                s, g, b = _split(t, ctx.get(dut.row_bank))
                dev.issue(cyc, ROW_NAMES[ctx.get(dut.row_cmd)], s, g, b,
                          row=ctx.get(dut.row_addr))
            if ctx.get(dut.col_valid):
                s, g, b = _split(t, ctx.get(dut.col_bank))
                name = COL_NAMES[ctx.get(dut.col_cmd)]
                col = ctx.get(dut.col_addr)
                tag = ctx.get(dut.col_tag)
                assert tag in inflight, f"cycle {cyc}: column command for unknown tag {tag} (seed {seed})"
                i = inflight.pop(tag)
                _, k, h, we, bank, row, bcol = bursts[i]
                assert (we, ctx.get(dut.col_bank), col) == (we, bank, bcol) and \
                    name.startswith("WR" if we else "RD"), \
                    f"cycle {cyc}: {name} bank {ctx.get(dut.col_bank)} col {col} for burst {bursts[i]} (seed {seed})"
                assert dev.open_row(s, g, b) == row, f"cycle {cyc}: burst {bursts[i]} in the wrong row"
                if name in ("WR", "WRA"):
                    dev.issue(cyc, name, s, g, b, col=col, data=i)
                else:
                    dev.issue(cyc, name, s, g, b, col=col)
                if h == 1:
                    assert i - 1 in issued, f"second half of request {k} before the first (seed {seed})"
                issued[i] = cyc
                if ctx.get(dut.col_first):
                    firsts.append(k)
            if accepted:
                inflight[bursts[nxt][0]] = nxt
                nxt += 1
                # a request's second burst follows at once; a new request may wait
                if nxt < len(bursts) and bursts[nxt][2] == 0 and gaps[bursts[nxt][1]]:
                    idle_left = rng.randrange(1, 30)
            await ctx.tick()
            cyc += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert dev.violation_total == 0
    # one first column command per request: 64 B requests were merged into one entry
    assert sorted(firsts) == list(range(len(reqs))), \
        f"col_first per request: got {len(firsts)} for {len(reqs)} requests (seed {seed})"
    counts = dev.command_counts
    if page == "closed":
        # every request ends with an auto-precharge (a 64 B one as RD + RDA)
        assert counts.get("RDA", 0) + counts.get("WRA", 0) >= len(reqs), counts
    if page == "open":
        assert counts.get("RDA", 0) + counts.get("WRA", 0) == 0, counts


def test_unloaded_row_hit_issues_next_cycle():
    """The scheduler's share of the unloaded row-hit latency (controller: RL + 4 cycles from the
    native request, hbm.md target CL + burst + 4): a 64 B read to an open row with an idle queue
    has its first RD in the cycle after it is accepted and its second tCCD_L later."""
    t = resolve("hbm2")
    dut = _Pair(t, depth=32, page="open", refresh="allbank")
    seen = []

    async def bench(ctx):
        cyc = 0

        async def offer(col, tag):
            nonlocal cyc
            ctx.set(dut.req_valid, 1)
            ctx.set(dut.req_bank, 5)
            ctx.set(dut.req_row, 7)
            ctx.set(dut.req_col, col)
            ctx.set(dut.req_tag, tag)
            assert ctx.get(dut.req_ready)
            at = cyc
            await ctx.tick()
            cyc += 1
            ctx.set(dut.req_valid, 0)
            return at

        async def run(n):
            nonlocal cyc
            for _ in range(n):
                if ctx.get(dut.col_valid):
                    seen.append((cyc, ctx.get(dut.col_tag), ctx.get(dut.col_first)))
                await ctx.tick()
                cyc += 1

        await offer(0, 1)               # opens row 7 (a miss)
        await offer(1, 2)
        await run(100)
        seen.clear()
        a0 = cyc
        ctx.set(dut.req_valid, 1)       # the hit: two bursts back to back
        ctx.set(dut.req_bank, 5)
        ctx.set(dut.req_row, 7)
        ctx.set(dut.req_col, 2)
        ctx.set(dut.req_tag, 3)
        assert ctx.get(dut.req_ready)
        await ctx.tick()
        cyc += 1
        ctx.set(dut.req_col, 3)
        ctx.set(dut.req_tag, 4)
        assert ctx.get(dut.req_ready)
        if ctx.get(dut.col_valid):
            seen.append((cyc, ctx.get(dut.col_tag), ctx.get(dut.col_first)))
        await ctx.tick()
        cyc += 1
        ctx.set(dut.req_valid, 0)
        await run(20)
        assert seen[:2] == [(a0 + 1, 3, 1), (a0 + 1 + t.tCCD_L, 4, 0)], seen

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
