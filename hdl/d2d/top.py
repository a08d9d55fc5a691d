"""Tops of the D2D link: one die (``d2d_top``) and a two-die test top (``d2d_pair``).

``D2DTop`` is one die's adapter with its protocol streams and lane ports, what a chiplet
instantiates. ``D2DPair`` holds die A's and die B's adapters for end-to-end simulation; the lanes
of both directions are top-level ports so a cocotb testbench carries them through the channel
model (sim/d2d/channel.py) with its bit errors, bursts, stuck lanes and reversal. In the pair,
die A sends on its two streams and die B receives; die B's own streams are idle, so the B -> A
direction carries control flits (Acks, Naks, credit returns).

Lane word: lane ``i`` carries byte ``i`` of the adapter's beat, bit ``t`` of that byte in UI
``t`` (``ui_per_cycle = 8``); this matches the channel model's word layout (lane ``i`` is bits
``[8i, 8i+8)``). The Valid lane frames the beats.
"""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .adapter import COUNTERS, D2DAdapter, D2DConfig

__all__ = ["D2DTop", "D2DPair"]


class D2DTop(wiring.Component):
    """One die's D2D adapter with lane ports (top module name ``d2d_top``).

    Members
    -------
    s0_i, s1_i, s0_o, s1_o : protocol streams (see :class:`D2DAdapter`).
    tx_lanes : Out(lanes * ui_per_cycle), tx_valid : Out(1)
    rx_lanes : In(lanes * ui_per_cycle), rx_valid : In(1)
    link_up : In(1), retrain_req : Out(1), overflow : Out(1), counters : Out(32) each.
    """

    def __init__(self, config=None):
        self._cfg = c = config or D2DConfig()
        self._adapter = D2DAdapter(c)
        pw = 8 * c.payload_bytes
        w = c.lanes * c.ui_per_cycle
        members = {
            "s0_i": In(stream.Signature(pw)),
            "s1_i": In(stream.Signature(pw)),
            "s0_o": Out(stream.Signature(data.StructLayout({"data": pw, "last": 1}))),
            "s1_o": Out(stream.Signature(data.StructLayout({"data": pw, "last": 1}))),
            "tx_lanes": Out(w),
            "tx_valid": Out(1),
            "rx_lanes": In(w),
            "rx_valid": In(1),
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
        m.d.comb += [
            self.tx_lanes.eq(a.tx.payload), self.tx_valid.eq(a.tx.valid), a.tx.ready.eq(1),
            a.rx.payload.eq(self.rx_lanes), a.rx.valid.eq(self.rx_valid),
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
        w = c.lanes * c.ui_per_cycle
        olay = data.StructLayout({"data": pw, "last": 1})
        members = {
            "a_s0_i": In(stream.Signature(pw)),
            "a_s1_i": In(stream.Signature(pw)),
            "b_s0_o": Out(stream.Signature(olay)),
            "b_s1_o": Out(stream.Signature(olay)),
            "link_up": In(1),
        }
        for die in "ab":
            members.update({f"{die}_tx_lanes": Out(w), f"{die}_tx_valid": Out(1),
                            f"{die}_rx_lanes": In(w), f"{die}_rx_valid": In(1),
                            f"{die}_retrain_req": Out(1), f"{die}_overflow": Out(1)})
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
            m.d.comb += [
                getattr(self, f"{die}_tx_lanes").eq(d.tx_lanes),
                getattr(self, f"{die}_tx_valid").eq(d.tx_valid),
                d.rx_lanes.eq(getattr(self, f"{die}_rx_lanes")),
                d.rx_valid.eq(getattr(self, f"{die}_rx_valid")),
                getattr(self, f"{die}_retrain_req").eq(d.retrain_req),
                getattr(self, f"{die}_overflow").eq(d.overflow),
            ]
            for name in COUNTERS:
                m.d.comb += getattr(self, f"{die}_{name}").eq(getattr(d, name))
        return m
