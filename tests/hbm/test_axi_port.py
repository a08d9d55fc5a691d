"""The HBM AXI4 port alone (Amaranth simulator) against the specification model
``sim/hbm/axi_model.py``: narrow transfers, FIXED / INCR / WRAP bursts, unaligned starts, sparse
and out-of-lane write strobes, illegal bursts (SLVERR, memory unchanged), SLVERR from the
controller's uncorrectable-error flag, random ready/valid gaps on every channel.

The native side is a burst memory model (writes apply their strobes, reads return in request
order with random delays), so every beat's lanes are checked against the byte-level golden memory.
Seed: $DIESTACK_SEED (printed).
"""

import os
import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from diestack.hdl.hbm.axi_port import AXIPort
from diestack.sim.hbm.axi_model import FIXED, INCR, WRAP, ByteMemory, beats, legal

SEED = int(os.environ.get("DIESTACK_SEED", "20261130"))
print(f"HBM AXI port tests: seed {SEED} (set DIESTACK_SEED to override)")

BUS = 32                     # bytes per beat = one native burst
WINDOW = 1024                # address window (bytes): bursts overlap often


def _random_burst(rng):
    """(addr, size, length, burst) - mostly legal, some illegal."""
    kind = rng.random()
    if kind < 0.08:                                   # illegal
        choice = rng.randrange(4)
        if choice == 0:
            return rng.randrange(WINDOW), rng.choice((6, 7)), rng.randint(1, 4), INCR
        if choice == 1:
            return rng.randrange(WINDOW), rng.randrange(6), rng.randint(1, 4), 3
        if choice == 2:
            size = rng.randrange(6)
            return rng.randrange(WINDOW) >> size << size, size, rng.choice((3, 5, 6)), WRAP
        size = rng.randrange(1, 6)
        a = (rng.randrange(WINDOW) >> size << size) | rng.randrange(1, 1 << size)
        return a, size, 4, WRAP
    size = rng.choice((0, 1, 2, 3, 4, 5, 5, 5))
    burst = rng.choice((FIXED, INCR, INCR, WRAP))
    if burst == WRAP:
        length = rng.choice((2, 4, 8, 16))
        addr = rng.randrange(WINDOW) >> size << size
    else:
        length = rng.randint(1, 8 if burst == INCR else 4)
        addr = rng.randrange(WINDOW - length * (1 << size))
    return addr, size, length, burst


@pytest.mark.parametrize("combine", [False, True], ids=["direct", "combine"])
def test_axi_port_bursts_against_spec_model(combine):
    rng = random.Random(SEED)
    dut = AXIPort(addr_width=16, data_width=BUS * 8, id_width=4, native_addr_width=16,
                  outstanding=4, combine=combine)
    a, q, p = dut.s_axi, dut.req, dut.resp
    golden = ByteMemory(BUS)
    bursts = {}                          # native memory: burst address -> int
    poisoned = {rng.randrange(WINDOW // BUS) * BUS for _ in range(2)}
    ops = [(rng.random() < 0.55, *_random_burst(rng)) for _ in range(160)]
    done = []
    stats = {"narrow": 0, "fixed": 0, "wrap": 0, "illegal": 0, "reads": 0, "writes": 0}
    nat = {"writes": 0, "beats": 0}

    async def native(ctx):
        """Controller model: posted writes with strobes, reads answered in order."""
        pend = deque()
        ctx.set(p.valid, 0)
        while not done:
            ctx.set(q.ready, int(rng.random() < 0.7))
            show = pend and pend[0][0] <= 0 and rng.random() < 0.8
            if show:
                ctx.set(p.valid, 1)
                ctx.set(p.rdata, pend[0][1])
                ctx.set(p.err, pend[0][2])
            else:
                ctx.set(p.valid, 0)
            _, _, qv, qr, we, addr, wdata, wstrb, pv, pr = await ctx.tick().sample(
                q.valid, q.ready, q.we, q.addr, q.wdata, q.wstrb, p.valid, p.ready)
            for e in pend:
                e[0] -= 1
            if pv and pr:
                pend.popleft()
            if qv and qr:
                assert addr % BUS == 0, f"native address {addr:#x} not burst aligned"
                old = bursts.get(addr, 0)
                if we:
                    nat["writes"] += 1
                    for j in range(BUS):
                        if wstrb >> j & 1:
                            old = (old & ~(0xFF << 8 * j)) | (wdata & (0xFF << 8 * j))
                    bursts[addr] = old
                else:
                    pend.append([rng.randrange(6), old, int(addr in poisoned)])

    async def handshake(ctx, valid, ready):
        ctx.set(valid, 1)
        while True:
            _, _, r = await ctx.tick().sample(ready)
            if r:
                break
        ctx.set(valid, 0)

    async def master(ctx):
        for n in ("awvalid", "wvalid", "bready", "arvalid", "rready"):
            ctx.set(getattr(a, n), 0)
        for k, (is_w, addr, size, length, burst) in enumerate(ops):
            ok = legal(addr, size, length, burst, BUS)
            stats["illegal"] += not ok
            stats["narrow"] += ok and size < 5
            stats["fixed"] += ok and burst == FIXED
            stats["wrap"] += ok and burst == WRAP
            plan = beats(addr, size, length, burst, BUS) if ok else [(0, 0, BUS - 1)] * length
            aid = rng.randrange(16)
            what = f"op {k}: {'write' if is_w else 'read'} addr {addr:#x} size {size} " \
                   f"len {length} burst {burst} (seed {SEED})"
            if is_w:
                stats["writes"] += 1
                for n, v in (("awid", aid), ("awaddr", addr), ("awlen", length - 1),
                             ("awsize", size), ("awburst", burst)):
                    ctx.set(getattr(a, n), v)
                await handshake(ctx, a.awvalid, a.awready)
                for i, (an, lo, hi) in enumerate(plan):
                    while rng.random() < 0.2:
                        await ctx.tick()
                    data = rng.getrandbits(BUS * 8)
                    strb = rng.choice(((1 << BUS) - 1, rng.getrandbits(BUS)))
                    ctx.set(a.wdata, data)
                    ctx.set(a.wstrb, strb)
                    ctx.set(a.wlast, int(i == length - 1))
                    await handshake(ctx, a.wvalid, a.wready)
                    if ok:
                        golden.write_beat(an, lo, hi, data, strb)
                        nat["beats"] += 1
                while True:
                    ctx.set(a.bready, int(rng.random() < 0.6))
                    _, _, bv, br, bid, bresp = await ctx.tick().sample(
                        a.bvalid, a.bready, a.bid, a.bresp)
                    if bv and br:
                        break
                ctx.set(a.bready, 0)
                assert bid == aid, f"{what}: BID {bid} != {aid}"
                assert bresp == (0 if ok else 2), f"{what}: BRESP {bresp}"
            else:
                stats["reads"] += 1
                for n, v in (("arid", aid), ("araddr", addr), ("arlen", length - 1),
                             ("arsize", size), ("arburst", burst)):
                    ctx.set(getattr(a, n), v)
                # what each beat must carry, fixed now (no write is in flight)
                want = [(golden.read_lanes(an, lo, hi),
                         (an // BUS) * BUS in poisoned) for an, lo, hi in plan]
                await handshake(ctx, a.arvalid, a.arready)
                i = 0
                while i < length:
                    ctx.set(a.rready, int(rng.random() < 0.7))
                    _, _, rv, rr, rid, rdata, rresp, rlast = await ctx.tick().sample(
                        a.rvalid, a.rready, a.rid, a.rdata, a.rresp, a.rlast)
                    if not (rv and rr):
                        continue
                    lanes, bad = want[i]
                    assert rid == aid, f"{what}: RID {rid} beat {i}"
                    assert rlast == (i == length - 1), f"{what}: RLAST on beat {i}"
                    assert rresp == (2 if (bad or not ok) else 0), f"{what}: RRESP {rresp} beat {i}"
                    if ok:
                        diff = [(ln, (rdata >> 8 * ln) & 0xFF, v) for ln, v in lanes.items()
                                if (rdata >> 8 * ln) & 0xFF != v]
                        assert not diff, f"{what}: beat {i} lanes (lane, got, want) {diff[:4]}"
                    i += 1
                ctx.set(a.rready, 0)
        done.append(True)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(native)
    sim.add_testbench(master)
    sim.run()
    assert all(stats[k] > 0 for k in stats), stats
    # combining gathers narrow beats of one 32 B burst: fewer native writes than W beats
    if combine:
        assert nat["writes"] < 0.8 * nat["beats"], nat
    else:
        assert nat["writes"] == nat["beats"], nat
