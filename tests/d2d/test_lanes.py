"""Lane layer: striping map, reversal, spare repair, width degrade and scrambler.

RTL TX lanes -> channel model -> RTL RX lanes must round-trip random beats exactly; the wire image
is checked against a Python striping model written from the lanes.py docstring, and the scrambler
against a bit-serial Python LFSR written from the polynomial.
"""

import os

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from diestack.hdl.d2d.lanes import LaneConfig, LaneRx, LaneTx, scrambler_seed
from diestack.sim.d2d.channel import Channel, amaranth_connect, word_to_bits


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


def py_lfsr_stream(seed, nbits):
    """Bit-serial Galois LFSR, G(x) = x^23+x^21+x^16+x^8+x^5+x^2+1: output = top bit each UI."""
    poly = (1 << 21) | (1 << 16) | (1 << 8) | (1 << 5) | (1 << 2) | 1
    s = seed
    out = np.zeros(nbits, np.uint8)
    for t in range(nbits):
        o = (s >> 22) & 1
        out[t] = o
        s = ((s << 1) & 0x7FFFFF) ^ (poly if o else 0)
    return out


def py_stripe(beat, nlanes, ui):
    """Model of the documented byte-to-lane map: byte b -> lane b % n, UIs 8*(b//n)..+7, LSB first."""
    bits = np.zeros((nlanes, ui), np.uint8)
    for b, byte in enumerate(beat):
        for t in range(8):
            bits[b % nlanes, 8 * (b // nlanes) + t] = (byte >> t) & 1
    return bits


def repair_entries(tx, broken_slots):
    """repair port value for data slots in ``broken_slots`` (spares assigned in order per group)."""
    c = tx.cfg
    entries = [{"en": 0, "lane": 0} for _ in range(c.spares)]
    used = [0] * c.groups
    for slot in broken_slots:
        g, idx = divmod(slot, c.group_lanes)
        k = g * c.spares_per_group + used[g]
        used[g] += 1
        entries[k] = {"en": 1, "lane": idx}
    return entries


def run_link(lanes, bpc, spares, channel_kw, *, reverse, broken=(), width=0, scramble=False,
             nbeats=60, seed=0, valid_prob=0.7):
    """Send random beats TX -> channel -> RX; return (sent beats, received beats, cycles)."""
    tx = LaneTx(lanes, bpc, spares, scrambler=scramble)
    rx = LaneRx(lanes, bpc, spares, scrambler=scramble)
    c = tx.cfg
    ch = Channel(lanes=c.slots, ui_per_cycle=c.ui, seed=seed, **channel_kw)
    top = Module()
    top.submodules.tx = tx
    top.submodules.rx = rx
    rng = np.random.default_rng(seed)
    beats = [int.from_bytes(rng.integers(0, 256, bpc, dtype=np.uint8).tobytes(), "little")
             for _ in range(nbeats)]
    got = []
    entries = repair_entries(tx, broken)
    state = {"cycles": 0}

    async def producer(ctx):
        for dut in (tx, rx):
            for k, e in enumerate(entries):
                ctx.set(dut.repair[k], e)
            ctx.set(dut.width, width)
            ctx.set(dut.scramble, int(scramble))
            ctx.set(dut.hold, 0)
        ctx.set(tx.reverse, int(reverse))
        i = 0
        while i < len(beats):
            v = rng.random() < valid_prob
            ctx.set(tx.valid, int(v))
            ctx.set(tx.data, beats[i] if v else int(rng.integers(0, 1 << 62)))
            ready = ctx.get(tx.ready)
            await ctx.tick()
            state["cycles"] += 1
            if v and ready:
                i += 1
        ctx.set(tx.valid, 0)
        await ctx.tick().repeat(ch.config.latency + 6)

    async def consumer(ctx):
        async for _ in ctx.tick():
            if ctx.get(rx.valid):
                got.append(ctx.get(rx.data))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(amaranth_connect(ch, tx.lanes, rx.lanes, tx.lanes_valid, rx.lanes_valid),
                      background=True)
    sim.add_testbench(consumer, background=True)
    sim.run()
    return beats, got, state["cycles"]


def _check(beats, got, seed, what):
    assert len(got) == len(beats), f"seed={seed} {what}: {len(got)} beats received of {len(beats)}"
    for i, (a, b) in enumerate(zip(beats, got)):
        assert a == b, f"seed={seed} {what}: beat {i} differs"


def test_wire_image_matches_documented_stripe_map():
    seed = _seed(31)
    rng = np.random.default_rng(seed)
    for lanes, bpc in ((16, 16), (16, 32), (32, 32)):
        tx = LaneTx(lanes, bpc, 2)
        c = tx.cfg
        beat = rng.integers(0, 256, bpc, dtype=np.uint8)
        seen = {}

        async def bench(ctx):
            ctx.set(tx.data, int.from_bytes(beat.tobytes(), "little"))
            ctx.set(tx.valid, 1)
            ctx.set(tx.repair[0], {"en": 1, "lane": 3})       # spare 0 copies logical lane 3
            await ctx.tick()
            seen["full"] = word_to_bits(ctx.get(tx.lanes), c.slots, c.ui)
            seen["valid"] = ctx.get(tx.lanes_valid)
            ctx.set(tx.reverse, 1)
            await ctx.tick()
            seen["rev"] = word_to_bits(ctx.get(tx.lanes), c.slots, c.ui)
            ctx.set(tx.reverse, 0)
            ctx.set(tx.width, 2)                               # upper half only, two clocks per beat
            ready = []
            for _ in range(2):
                ready.append(ctx.get(tx.ready))
                await ctx.tick()
                seen.setdefault("deg", []).append(word_to_bits(ctx.get(tx.lanes), c.slots, c.ui))
            seen["ready"] = ready

        sim = Simulator(tx)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        want = py_stripe(beat, lanes, c.ui)
        assert seen["valid"] == 1
        assert np.array_equal(seen["full"][:lanes], want), f"seed={seed} lanes={lanes} W={bpc}"
        assert np.array_equal(seen["full"][lanes], want[3]), "spare 0 must carry lane 3"
        assert not seen["full"][lanes + 1:].any()
        assert np.array_equal(seen["rev"], seen["full"][::-1])
        assert seen["ready"] == [0, 1]
        h = lanes // 2
        for ph in range(2):
            d = seen["deg"][ph]
            assert not d[:h].any()
            assert np.array_equal(d[h:lanes], py_stripe(beat[ph * bpc // 2:(ph + 1) * bpc // 2], h, c.ui))


@pytest.mark.parametrize("lanes,bpc,reverse,stuck,latency", [
    (16, 16, False, -1, 0),
    (16, 16, True, 5, 3),
    (32, 64, True, 0, 1),      # reversed: physical lane 0 carries spare slot 33, no repair needed
    (32, 32, True, 33, 1),     # reversed: physical lane 33 carries data slot 0
    (64, 64, False, 40, 2),
])
def test_round_trip_reversal_stuck_repair(lanes, bpc, reverse, stuck, latency):
    seed = _seed(100 + lanes + stuck)
    P = LaneConfig(lanes, bpc, 2).slots
    broken = []
    if stuck >= 0:
        slot = P - 1 - stuck if reverse else stuck     # the TX undoes the reversal: slot on RX lane
        if slot < lanes:
            broken = [slot]
    kw = dict(reverse=reverse, stuck_lane=stuck, stuck_value=int(seed & 1), latency=latency)
    beats, got, _ = run_link(lanes, bpc, 2, kw, reverse=reverse, broken=broken, seed=seed)
    _check(beats, got, seed, f"lanes={lanes} rev={reverse} stuck={stuck}")


def test_stuck_lane_without_repair_corrupts():
    """Control: the same stuck lane with no repair entry must corrupt data (the test can fail)."""
    seed = _seed(7)
    beats, got, _ = run_link(16, 16, 2, dict(stuck_lane=5, stuck_value=1), reverse=False, seed=seed)
    assert len(got) == len(beats) and got != beats


def test_two_repairs_per_group_and_degrade():
    seed = _seed(55)
    # two broken lanes in each 32-lane group of a x64 link: both spares of each group in use
    beats, got, _ = run_link(64, 64, 2, dict(), reverse=False, broken=[3, 30, 32, 63], seed=seed,
                             nbeats=30)
    _check(beats, got, seed, "x64 four repairs")
    # x16 with no spares (UCIe-S style): a broken lane in the lower half -> run on the upper half
    beats, got, cycles = run_link(16, 16, 0, dict(stuck_lane=2), reverse=False, width=2, seed=seed,
                                  valid_prob=1.0, nbeats=40)
    _check(beats, got, seed, "x16 -> x8 degrade (upper half)")
    assert cycles >= 2 * len(beats), "degraded width must take two clocks per beat"
    beats, got, _ = run_link(16, 32, 0, dict(stuck_lane=12, latency=2), reverse=False, width=1, seed=seed)
    _check(beats, got, seed, "x16 -> x8 degrade (lower half)")


def test_scrambler_matches_python_lfsr():
    seed = _seed(66)
    rng = np.random.default_rng(seed)
    lanes, bpc = 16, 16
    tx = LaneTx(lanes, bpc, 2, scrambler=True)
    c = tx.cfg
    nbeats = 12
    beats = [rng.integers(0, 256, bpc, dtype=np.uint8) for _ in range(nbeats)]
    valids = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1]
    wires = []

    async def bench(ctx):
        ctx.set(tx.scramble, 1)
        ctx.set(tx.hold, 1)
        await ctx.tick()
        ctx.set(tx.hold, 0)
        for beat, v in zip(beats, valids):
            ctx.set(tx.valid, v)
            ctx.set(tx.data, int.from_bytes(beat.tobytes(), "little"))
            await ctx.tick()
            wires.append(word_to_bits(ctx.get(tx.lanes), c.slots, c.ui))

    sim = Simulator(tx)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    nvalid = sum(valids)
    keys = [py_lfsr_stream(scrambler_seed(k), nvalid * c.ui).reshape(nvalid, c.ui) for k in range(c.slots)]
    j = 0
    for i, (beat, v) in enumerate(zip(beats, valids)):
        if not v:
            assert not wires[i].any(), "idle clocks send zeros, the LFSRs do not advance"
            continue
        plain = py_stripe(beat, lanes, c.ui)
        for k in range(lanes):
            assert np.array_equal(wires[i][k], plain[k] ^ keys[k][j]), f"seed={seed} beat {i} lane {k}"
        for k in range(lanes, c.slots):                      # unused spares: keystream only
            assert np.array_equal(wires[i][k], keys[k][j])
        j += 1


def test_scrambled_round_trip_with_faults():
    seed = _seed(88)
    P = LaneConfig(32, 32, 2).slots
    stuck = 7
    slot = P - 1 - stuck                     # reversed: TX lane 7 carries slot P-1-7 = data slot 26
    beats, got, _ = run_link(32, 32, 2, dict(reverse=True, stuck_lane=stuck, latency=2), reverse=True,
                             broken=[slot], scramble=True, seed=seed)
    _check(beats, got, seed, "scrambled, reversed, repaired")


def test_constructor_validation():
    with pytest.raises(TypeError, match="lanes"):
        LaneTx(24, 24)
    with pytest.raises(TypeError, match="bytes_per_cycle"):
        LaneRx(32, 16)
    with pytest.raises(TypeError, match="spares_per_group"):
        LaneTx(16, 16, 7)
