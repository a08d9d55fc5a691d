"""Link training: two D2DPhy instances (die A, die B) over the channel model.

Checks: ACTIVE on a clean and on a reversed channel; a stuck lane repaired with the spare map of
golden.plan_repair; width degrade; a fault injected while ACTIVE (detected as corrupted beats by a
stand-in for the adapter) leads to RETRAIN and back to ACTIVE with the lane repaired; unrepairable
channels end in TRAINERROR. After training, random beats must cross both directions exactly.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from diestack.hdl.common.verilog import to_verilog
from diestack.sim import runner

from diestack.hdl.d2d.lanes import LaneConfig
from diestack.hdl.d2d.sideband import FRAME_CLOCKS, SidebandRx, SidebandTx, frame_bits, parse_frames
from diestack.hdl.d2d.training import D2DPhy, State
from diestack.sim.d2d import golden
from diestack.sim.d2d.channel import Channel, amaranth_connect


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


# --------------------------------------------------------------------------------------------
# sideband framing against the Python frame model
# --------------------------------------------------------------------------------------------

def test_sideband_frames_and_check():
    seed = _seed(41)
    rng = np.random.default_rng(seed)
    msgs = [int(rng.integers(0, 1 << 32)) for _ in range(6)]
    top = Module()
    top.submodules.tx = tx = SidebandTx()
    top.submodules.rx = rx = SidebandRx()
    line, got = [], []
    frame = len(frame_bits(0))
    assert frame == FRAME_CLOCKS

    async def bench(ctx):
        i, start = 0, None
        for _ in range(len(msgs) * frame + 10):
            v = ctx.get(tx.line)
            line.append(v)
            if v and start is None:
                start = len(line) - 1
            # corrupt one data bit of the third frame on the way to the receiver
            corrupt = start is not None and len(line) - 1 == start + 2 * frame + 5
            ctx.set(rx.line, v ^ int(corrupt))
            ctx.set(tx.valid, int(i < len(msgs)))
            ctx.set(tx.msg.as_value(), msgs[min(i, len(msgs) - 1)])
            if i < len(msgs) and ctx.get(tx.ready):
                i += 1
            await ctx.tick()
            if ctx.get(rx.valid):
                got.append(ctx.get(rx.msg.as_value()))
        out["errors"] = ctx.get(rx.check_errors)

    out = {}
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    start = next(i for i, v in enumerate(line) if v)
    want_line = sum((frame_bits(v) for v in msgs), [])
    assert line[start:start + len(want_line)] == want_line, f"seed={seed}"
    assert parse_frames(want_line) == msgs
    assert got == msgs[:2] + msgs[3:], f"seed={seed}: the corrupted frame must be dropped"
    assert out["errors"] == 1


# --------------------------------------------------------------------------------------------
# two dies over the channel model
# --------------------------------------------------------------------------------------------

class Link:
    """Two D2DPhy instances wired through two Channel objects, simulated together."""

    def __init__(self, lanes=16, bpc=16, spares=2, ab=None, ba=None, seed=0, b_kw=None, **phy_kw):
        self.a = D2DPhy(lanes, bpc, spares, **phy_kw)
        self.b = D2DPhy(lanes, bpc, spares, **{**phy_kw, **(b_kw or {})})
        self.cfg = LaneConfig(lanes, bpc, spares)
        geo = dict(lanes=self.cfg.slots, ui_per_cycle=self.cfg.ui)
        self.ab = Channel(**geo, **{"seed": seed, **(ab or {})})
        self.ba = Channel(**geo, **{"seed": seed + 1, **(ba or {})})
        self.top = Module()
        self.top.submodules.a = self.a
        self.top.submodules.b = self.b
        self.trace = {"a": [], "b": []}
        self.rng = np.random.default_rng(seed)
        self.seed = seed

    def run(self, bench):
        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        a, b = self.a, self.b
        sim.add_testbench(amaranth_connect(self.ab, a.lanes_tx, b.lanes_rx, a.lanes_tx_valid,
                                           b.lanes_rx_valid, a.sb_tx, b.sb_rx), background=True)
        sim.add_testbench(amaranth_connect(self.ba, b.lanes_tx, a.lanes_rx, b.lanes_tx_valid,
                                           a.lanes_rx_valid, b.sb_tx, a.sb_rx), background=True)
        sim.add_testbench(bench)
        sim.run()

    async def tick(self, ctx):
        await ctx.tick()
        for name, die in (("a", self.a), ("b", self.b)):
            st = State(ctx.get(die.state))
            if not self.trace[name] or self.trace[name][-1] != st:
                self.trace[name].append(st)

    async def train(self, ctx, cap=6000, until=(State.ACTIVE, State.TRAINERROR)):
        for die in (self.a, self.b):
            ctx.set(die.start, 1)
        for cyc in range(cap):
            await self.tick(ctx)
            sa, sb = State(ctx.get(self.a.state)), State(ctx.get(self.b.state))
            if sa in until and sb in until:
                return cyc
        raise AssertionError(f"seed={self.seed}: not trained after {cap} clocks: {self.trace}")

    async def exchange(self, ctx, nbeats=24, retrain_on_error=False, cap=8000):
        """Random beats A->B and B->A; returns (errors seen, beats ok). Checks order and content.

        With ``retrain_on_error`` a corrupted beat makes die A request a retrain (the adapter's
        escalation) and the exchange restarts after the link is ACTIVE again.
        """
        W = self.cfg.bytes_per_cycle
        mk = lambda: int.from_bytes(self.rng.integers(0, 256, W, dtype=np.uint8).tobytes(), "little")
        q = {"ab": [mk() for _ in range(nbeats)], "ba": [mk() for _ in range(nbeats)]}
        sent = {"ab": 0, "ba": 0}
        got = {"ab": [], "ba": []}
        errors = 0
        pairs = (("ab", self.a, self.b), ("ba", self.b, self.a))
        for _ in range(cap):
            for key, tx, _ in pairs:
                if sent[key] < nbeats:
                    ctx.set(tx.tx_valid, 1)
                    ctx.set(tx.tx_data, q[key][sent[key]])
                else:
                    ctx.set(tx.tx_valid, 0)
            ready = {key: ctx.get(tx.tx_ready) for key, tx, _ in pairs}
            await self.tick(ctx)
            ctx.set(self.a.retrain_req, 0)
            for key, tx, rx in pairs:
                if ready[key] and sent[key] < nbeats:
                    sent[key] += 1
                if ctx.get(rx.rx_valid):
                    v = ctx.get(rx.rx_data)
                    i = len(got[key])
                    if i < nbeats and v == q[key][i]:
                        got[key].append(v)
                    else:
                        errors += 1
                        if not retrain_on_error:
                            raise AssertionError(f"seed={self.seed}: {key} beat {i} corrupted or extra")
                        for die in (self.a, self.b):
                            ctx.set(die.tx_valid, 0)          # nothing stale is sent after the retrain
                        ctx.set(self.a.retrain_req, 1)
                        await self.tick(ctx)
                        ctx.set(self.a.retrain_req, 0)
                        await self.train(ctx)
                        assert State(ctx.get(self.a.state)) == State.ACTIVE, f"seed={self.seed}"
                        return errors + (await self.exchange(ctx, nbeats))[0], None
            if all(len(got[k]) == nbeats for k in got):
                return errors, nbeats
        raise AssertionError(f"seed={self.seed}: exchange incomplete {[len(g) for g in got.values()]}")


def _path_ok(trace):
    order = [State.RESET, State.SBINIT, State.MBINIT_PARAM, State.MBINIT_REVERSAL, State.MBINIT_REPAIR,
             State.MBTRAIN, State.LINKINIT, State.ACTIVE]
    return [s for s in trace if s in order] == order[1:] or [s for s in trace if s in order] == order


@pytest.mark.parametrize("lanes,bpc,rev_ab,rev_ba,scrambler", [
    (16, 16, False, False, False),
    (16, 16, True, False, True),
    pytest.param(32, 32, True, True, False, marks=pytest.mark.slow),
    pytest.param(64, 64, False, True, True, marks=pytest.mark.slow),
])
def test_active_clean_and_reversed(lanes, bpc, rev_ab, rev_ba, scrambler):
    seed = _seed(500 + lanes + 2 * rev_ab + rev_ba)
    link = Link(lanes, bpc, 2, ab=dict(reverse=rev_ab, latency=3), ba=dict(reverse=rev_ba, latency=3),
                seed=seed, scrambler=scrambler)
    out = {}

    async def bench(ctx):
        out["cycles"] = await link.train(ctx)
        for die in ("a", "b"):
            d = getattr(link, die)
            out[die] = {k: ctx.get(getattr(d, k)) for k in ("tx_reverse", "rx_reversed", "tx_width", "rx_width")}
            out[die]["state"] = State(ctx.get(d.state))
        await link.exchange(ctx)

    link.run(bench)
    print(f"trained in {out['cycles']} clocks; trace {link.trace}")
    assert out["a"]["state"] == out["b"]["state"] == State.ACTIVE, f"seed={seed}"
    assert _path_ok(link.trace["a"]) and _path_ok(link.trace["b"]), link.trace
    assert out["a"]["tx_reverse"] == rev_ab and out["b"]["rx_reversed"] == rev_ab
    assert out["b"]["tx_reverse"] == rev_ba and out["a"]["rx_reversed"] == rev_ba
    assert out["a"]["tx_width"] == out["b"]["rx_width"] == 0


def _pass_mask(cfg, stuck_tx_lanes, reversed_wiring):
    bad = {(cfg.slots - 1 - k) if reversed_wiring else k for k in stuck_tx_lanes}
    return [k not in bad for k in range(cfg.slots)]


def _entries(view_value, spares):
    return [(int(view_value[k].en), int(view_value[k].lane)) for k in range(spares)]


@pytest.mark.parametrize("lanes,spares,stuck,reverse,degrade,expect", [
    (16, 2, (5,), True, True, "repair"),           # reversed + one stuck lane: spare repair
    pytest.param(32, 2, (3, 20), False, True, "repair",            # two lanes in one 32-lane group
                 marks=pytest.mark.slow),
    (16, 0, (2,), False, True, "degrade"),         # UCIe-S style: no spares, x16 -> x8 (upper)
    (16, 2, (1, 2, 3), False, True, "degrade"),    # spares exhausted in the lower half -> upper x8
    (16, 0, (2,), False, False, "error"),          # no spares, no degrade -> TRAINERROR
    (16, 2, (1, 2, 3, 9, 10, 11), False, True, "error"),   # both halves unrepairable
])
def test_stuck_lanes_repair_degrade_or_error(lanes, spares, stuck, reverse, degrade, expect):
    seed = _seed(700 + lanes + spares + sum(stuck))
    link = Link(lanes, lanes, spares, ab=dict(stuck_lane=stuck, reverse=reverse, latency=2),
                ba=dict(latency=2), seed=seed, allow_degrade=degrade)
    out = {}

    async def bench(ctx):
        out["cycles"] = await link.train(ctx)
        out["states"] = (State(ctx.get(link.a.state)), State(ctx.get(link.b.state)))
        out["rx"] = (_entries(ctx.get(link.b.rx_repair), link.cfg.spares), ctx.get(link.b.rx_width))
        out["tx"] = (_entries(ctx.get(link.a.tx_repair), link.cfg.spares), ctx.get(link.a.tx_width))
        if out["states"] == (State.ACTIVE, State.ACTIVE):
            await link.exchange(ctx)

    link.run(bench)
    print(f"{expect}: {out['cycles']} clocks, trace {link.trace}, B rx map {out['rx']}")
    plan = golden.plan_repair(_pass_mask(link.cfg, stuck, reverse), lanes, spares, degrade)
    if expect == "error":
        assert plan is None
        assert out["states"] == (State.TRAINERROR, State.TRAINERROR), f"seed={seed} {link.trace}"
        return
    assert out["states"] == (State.ACTIVE, State.ACTIVE), f"seed={seed} {link.trace}"
    width, entries = plan
    assert (width != 0) == (expect == "degrade")
    assert out["rx"] == (entries, width), f"seed={seed}: RTL repair map differs from golden plan"
    assert out["tx"] == out["rx"], f"seed={seed}: A's TX must apply B's map"


def test_fault_while_active_retrains_and_repairs():
    seed = _seed(901)
    link = Link(16, 16, 2, ab=dict(latency=4), ba=dict(latency=4), seed=seed, scrambler=True)
    out = {}

    async def bench(ctx):
        await link.train(ctx)
        await link.exchange(ctx, nbeats=10)
        # a lane of A -> B breaks while ACTIVE
        link.ab.config = dataclasses.replace(link.ab.config, stuck_lane=6, stuck_value=1)
        out["errors"], _ = await link.exchange(ctx, nbeats=30, retrain_on_error=True)
        out["retrains"] = (ctx.get(link.a.retrains), ctx.get(link.b.retrains))
        out["rx"] = _entries(ctx.get(link.b.rx_repair), link.cfg.spares)
        out["state"] = (State(ctx.get(link.a.state)), State(ctx.get(link.b.state)))

    link.run(bench)
    print(f"trace {link.trace}; errors before retrain {out['errors']}")
    assert out["errors"] >= 1, "the stuck lane must corrupt a beat before the retrain"
    assert out["retrains"] == (1, 1), f"seed={seed}"
    assert State.RETRAIN in link.trace["a"] and State.RETRAIN in link.trace["b"]
    assert out["state"] == (State.ACTIVE, State.ACTIVE)
    assert out["rx"] == golden.plan_repair(_pass_mask(link.cfg, (6,), False), 16, 2)[1]


def test_training_survives_sideband_errors_and_main_band_ber():
    """Sideband bit errors drop frames (resent by the handshake); main-band BER 1e-4 during the
    lane tests and MBTRAIN must not stop the link from reaching ACTIVE (MBTRAIN may retry)."""
    seed = _seed(77)
    noisy = dict(sideband_ber=3e-3, ber=1e-4, latency=2)
    link = Link(16, 16, 2, ab=noisy, ba=noisy, seed=seed)
    out = {}

    async def bench(ctx):
        out["cycles"] = await link.train(ctx, cap=20000)
        out["states"] = (State(ctx.get(link.a.state)), State(ctx.get(link.b.state)))
        out["sb_errors"] = ctx.get(link.a.sb_check_errors) + ctx.get(link.b.sb_check_errors)

    link.run(bench)
    print(f"{out}; sideband bits flipped {link.ab.sideband_flipped + link.ba.sideband_flipped}, "
          f"lane bits flipped {link.ab.flipped + link.ba.flipped}")
    assert out["states"] == (State.ACTIVE, State.ACTIVE), f"seed={seed} {link.trace}"
    assert link.ab.sideband_flipped + link.ba.sideband_flipped > 0, f"seed={seed}: no sideband error injected"
    # a flip while the sideband clock is stopped hits no frame; every other flip drops one frame
    assert out["sb_errors"] <= link.ab.sideband_flipped + link.ba.sideband_flipped, f"seed={seed}"


def test_partner_parameter_mismatch_is_trainerror():
    seed = _seed(3)
    top_link = Link(16, 16, 2, seed=seed, b_kw=dict(scrambler=True))   # B scrambles, A does not
    out = {}

    async def bench(ctx):
        await top_link.train(ctx)
        out["states"] = (State(ctx.get(top_link.a.state)), State(ctx.get(top_link.b.state)))

    top_link.run(bench)
    assert out["states"] == (State.TRAINERROR, State.TRAINERROR), top_link.trace


# --------------------------------------------------------------------------------------------
# the same in a Verilog simulator, with the cocotb channel connector (sim/d2d/tb_training.py)
# --------------------------------------------------------------------------------------------

class PhyPair(wiring.Component):
    """Test top: die A and die B D2DPhy instances, every port prefixed ``a_`` / ``b_``."""

    def __init__(self, *args, **kw):
        self._phys = {d: D2DPhy(*args, **kw) for d in ("a", "b")}
        members = {}
        for d, phy in self._phys.items():
            for name, member in phy.signature.members.items():
                members[f"{d}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for d, phy in self._phys.items():
            m.submodules[d] = phy
            for name, member in phy.signature.members.items():
                port, inner = getattr(self, f"{d}_{name}"), getattr(phy, name)
                m.d.comb += (inner.eq(port) if member.flow == wiring.In else port.eq(inner))
        return m


@pytest.mark.parametrize("sim", ["icarus"])
def test_cocotb_pair_trains_over_channel(sim, tmp_path):
    if sim not in runner.available():
        pytest.skip(f"{sim} not installed")
    seed = _seed(1234)
    lanes, bpc, spares = 16, 16, 2
    cfg = LaneConfig(lanes, bpc, spares)
    src = tmp_path / "d2d_phy_pair.v"
    src.write_text(to_verilog(PhyPair(lanes, bpc, spares, scrambler=True), "d2d_phy_pair"))
    stuck = 4
    job = {"lanes": cfg.slots, "ui": cfg.ui, "seed": seed, "nbeats": 16, "cap": 4000,
           "ab": {"reverse": True, "stuck_lane": stuck, "latency": 2}, "ba": {"latency": 5}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    b = runner.build([src], "d2d_phy_pair", sim=sim)
    res = runner.run(b, "diestack.sim.d2d.tb_training", extra_env={"DIESTACK_JOB": str(tmp_path)},
                     seed=seed, test_dir=tmp_path / "run")
    res.check()
    out = json.loads((tmp_path / "result.json").read_text())
    print(out)
    assert out["a_tx_reverse"] == 1 and out["b_tx_reverse"] == 0
    width, entries = golden.plan_repair(_pass_mask(cfg, (stuck,), True), lanes, spares)
    # x16: a spare entry is {en:1, lane:4 bits} = 5 bits
    packed = sum((en | (lane << 1)) << (k * 5) for k, (en, lane) in enumerate(entries))
    assert out["b_rx_repair"] == packed == out["a_tx_repair"], f"seed={seed}"
