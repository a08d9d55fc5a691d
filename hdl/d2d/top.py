"""Tops of the D2D link: one die (``d2d_top``) and a two-die test top (``d2d_pair``).

``D2DTop`` is one die's adapter with its protocol streams and lane ports, what a chiplet
instantiates. ``D2DPair`` holds die A's and die B's adapters for end-to-end simulation; the lanes
of both directions are top-level ports so a cocotb testbench carries them through the channel
model (sim/d2d/channel.py) with its bit errors, bursts, stuck lanes and reversal. In the pair,
die A sends on its two streams and die B receives; die B's own streams are idle, so the B -> A
direction carries control flits (Acks, Naks, credit returns).

Lanes: the adapter's beats go through D2D-PHY's lane layer (hdl/d2d/lanes.py: byte striping,
TX-side reversal, spare-lane repair with ``spares_per_group`` spares per 32-lane group, width
degrade, optional scrambler), so a lane port carries ``lanes + spares`` physical lanes of
``ui_per_cycle`` bits (the channel model's word layout). The lane configuration (``reverse``,
``repair``, ``width``, ``scramble``, ``hold``) and the training hooks (``override``,
``override_lanes`` on the TX side, ``raw`` on the RX side) are ports, set by link training. The
Valid lane frames the beats.
"""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .adapter import COUNTERS, D2DAdapter, D2DConfig
from .lanes import LaneConfig, LaneRx, LaneTx

__all__ = ["D2DTop", "D2DPair", "SPARES_PER_GROUP", "lane_config"]

SPARES_PER_GROUP = 2     # d2d.md §1.7: each 32-lane group can remap 2 lanes


def lane_config(config):
    """The lane-layer geometry of an adapter configuration."""
    return LaneConfig(config.lanes, config.bytes_per_cycle, SPARES_PER_GROUP)


def _lane_members(lc, prefix=""):
    p = prefix
    return {
        f"{p}tx_lanes": Out(lc.slots * lc.ui), f"{p}tx_valid": Out(1),
        f"{p}rx_lanes": In(lc.slots * lc.ui), f"{p}rx_valid": In(1),
        f"{p}reverse": In(1), f"{p}repair": In(_repair_shape(lc)),
        f"{p}width": In(2), f"{p}scramble": In(1), f"{p}hold": In(1),
        f"{p}override": In(1), f"{p}override_lanes": In(lc.slots * lc.ui),
        f"{p}raw": Out(lc.slots * lc.ui), f"{p}raw_valid": Out(1),
    }


def _repair_shape(lc):
    from .lanes import spare_layout
    return data.ArrayLayout(spare_layout(lc.group_lanes), lc.spares)


_LANE_CFG = ("repair", "width", "scramble", "hold")


class D2DTop(wiring.Component):
    """One die's D2D adapter with lane ports (top module name ``d2d_top``).

    Members
    -------
    s0_i, s1_i, s0_o, s1_o : protocol streams (see :class:`D2DAdapter`).
    tx_lanes : Out(slots * ui_per_cycle), tx_valid : Out(1)
        Physical lanes (data lanes then spares) and the Valid lane, to the channel.
    rx_lanes : In(slots * ui_per_cycle), rx_valid : In(1)
    reverse, repair, width, scramble, hold : In
        Lane configuration (``repair``/``width``/``scramble``/``hold`` apply to both this die's TX
        and RX, as training agrees them for both directions).
    override, override_lanes : In
        Training patterns on the TX lanes (Valid low).
    raw, raw_valid : Out
        Received lane words before descrambling (training's lane test).
    link_up : In(1), retrain_req : Out(1), overflow : Out(1), counters : Out(32) each.

    Latency: adapter + 1 clock in the lane TX + 1 clock in the lane RX.
    """

    def __init__(self, config=None):
        self._cfg = c = config or D2DConfig()
        self._adapter = D2DAdapter(c)
        self._lc = lc = lane_config(c)
        pw = 8 * c.payload_bytes
        members = {
            "s0_i": In(stream.Signature(pw)),
            "s1_i": In(stream.Signature(pw)),
            "s0_o": Out(stream.Signature(data.StructLayout({"data": pw, "last": 1}))),
            "s1_o": Out(stream.Signature(data.StructLayout({"data": pw, "last": 1}))),
            **_lane_members(lc),
            "link_up": In(1),
            "retrain_req": Out(1),
            "overflow": Out(1),
        }
        for name in COUNTERS:
            members[name] = Out(32)
        super().__init__(members)

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.adapter = a = self._adapter
        for s in ("s0_i", "s1_i"):
            wiring.connect(m, wiring.flipped(getattr(self, s)), getattr(a, s))
        for s in ("s0_o", "s1_o"):
            wiring.connect(m, getattr(a, s), wiring.flipped(getattr(self, s)))
        lc = self._lc
        m.submodules.lane_tx = ltx = LaneTx(lc.lanes, lc.bytes_per_cycle, lc.spares_per_group)
        m.submodules.lane_rx = lrx = LaneRx(lc.lanes, lc.bytes_per_cycle, lc.spares_per_group)
        for name in _LANE_CFG:
            m.d.comb += [getattr(ltx, name).eq(getattr(self, name)),
                         getattr(lrx, name).eq(getattr(self, name))]
        m.d.comb += [
            ltx.data.eq(a.tx.payload), ltx.valid.eq(a.tx.valid), a.tx.ready.eq(ltx.ready),
            ltx.reverse.eq(self.reverse), ltx.override.eq(self.override),
            ltx.override_lanes.eq(self.override_lanes),
            self.tx_lanes.eq(ltx.lanes), self.tx_valid.eq(ltx.lanes_valid),
            lrx.lanes.eq(self.rx_lanes), lrx.lanes_valid.eq(self.rx_valid),
            self.raw.eq(lrx.raw), self.raw_valid.eq(lrx.raw_valid),
            a.rx.payload.eq(lrx.data), a.rx.valid.eq(lrx.valid),
            a.link_up.eq(self.link_up),
            self.retrain_req.eq(a.retrain_req), self.overflow.eq(a.overflow),
        ]
        for name in COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(a, name))
        return m


class D2DPair(wiring.Component):
    """Die A and die B adapters for end-to-end simulation (top module name ``d2d_pair``).

    Members
    -------
    a_s0_i, a_s1_i : In(stream)
        Die A's protocol streams in.
    b_s0_o, b_s1_o : Out(stream)
        Die B's protocol streams out.
    a_tx_lanes, a_tx_valid, b_rx_lanes, b_rx_valid : lanes A -> B (through the channel model)
    b_tx_lanes, b_tx_valid, a_rx_lanes, a_rx_valid : lanes B -> A
    a_<lane config>, b_<lane config> : In
        ``reverse``, ``repair``, ``width``, ``scramble``, ``hold``, ``override``,
        ``override_lanes`` of each die; ``a_raw``/``b_raw`` out (see :class:`D2DTop`).
    link_up : In(1)
        Both adapters send flits.
    a_retrain_req, b_retrain_req, a_overflow, b_overflow : Out(1)
    a_<counter>, b_<counter> : Out(32)
    """

    def __init__(self, config=None):
        self._cfg = c = config or D2DConfig()
        self._a = D2DTop(c)
        self._b = D2DTop(c)
        pw = 8 * c.payload_bytes
        lc = lane_config(c)
        olay = data.StructLayout({"data": pw, "last": 1})
        members = {
            "a_s0_i": In(stream.Signature(pw)),
            "a_s1_i": In(stream.Signature(pw)),
            "b_s0_o": Out(stream.Signature(olay)),
            "b_s1_o": Out(stream.Signature(olay)),
            "link_up": In(1),
        }
        for die in "ab":
            members.update(_lane_members(lc, f"{die}_"))
            members.update({f"{die}_retrain_req": Out(1), f"{die}_overflow": Out(1)})
            for name in COUNTERS:
                members[f"{die}_{name}"] = Out(32)
        super().__init__(members)

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.die_a = a = self._a
        m.submodules.die_b = b = self._b
        wiring.connect(m, wiring.flipped(self.a_s0_i), a.s0_i)
        wiring.connect(m, wiring.flipped(self.a_s1_i), a.s1_i)
        wiring.connect(m, b.s0_o, wiring.flipped(self.b_s0_o))
        wiring.connect(m, b.s1_o, wiring.flipped(self.b_s1_o))
        m.d.comb += [a.s0_o.ready.eq(1), a.s1_o.ready.eq(1), b.s0_i.valid.eq(0),
                     b.s1_i.valid.eq(0), a.link_up.eq(self.link_up), b.link_up.eq(self.link_up)]
        for die, d in (("a", a), ("b", b)):
            for name in ("tx_lanes", "tx_valid", "raw", "raw_valid"):
                m.d.comb += getattr(self, f"{die}_{name}").eq(getattr(d, name))
            for name in ("rx_lanes", "rx_valid", "reverse", "override", "override_lanes") + _LANE_CFG:
                m.d.comb += getattr(d, name).eq(getattr(self, f"{die}_{name}"))
            m.d.comb += [
                getattr(self, f"{die}_retrain_req").eq(d.retrain_req),
                getattr(self, f"{die}_overflow").eq(d.overflow),
            ]
            for name in COUNTERS:
                m.d.comb += getattr(self, f"{die}_{name}").eq(getattr(d, name))
        return m
