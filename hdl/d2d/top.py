"""Tops of the D2D link: one die (``d2d_top``) and a two-die test top (``d2d_pair``).

``D2DTop`` is one die's complete D2D link: the adapter (flits, CRC, retry, credits) on top of
D2D-PHY's :class:`~.training.D2DPhy` (lane layer with reversal, spare-lane repair, width
degrade; sideband; link training), what a chiplet instantiates. ``D2DPair`` holds die A and die B
for end-to-end simulation; the lanes, Valid lanes and sidebands of both directions are top-level
ports so a cocotb testbench carries them through the channel model (sim/d2d/channel.py) with its
bit errors, bursts, stuck lanes and reversal. In the pair, die A sends on its two streams and die B
receives; die B's own streams are idle, so the B -> A direction carries control flits (Acks,
Naks, credit returns).

Link bring-up and repair are the PHY's: with ``start`` high the dies train (SBINIT ... ACTIVE);
the adapter sends flits while ``link_up``. The adapter's retry escalation (``retrain_req``) makes
the PHY retrain, which re-runs the lane tests, so a lane that breaks mid-transfer is repaired and
the replay buffer resends what was lost.

A lane port carries ``lanes + spares`` physical lanes of ``ui_per_cycle`` bits (the channel
model's word layout); ``SPARES_PER_GROUP`` spares per 32-lane group.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .adapter import COUNTERS, D2DAdapter, D2DConfig
from .lanes import LaneConfig, spare_layout
from .training import D2DPhy

__all__ = ["D2DTop", "D2DPair", "LatencyMonitor", "SPARES_PER_GROUP", "lane_config", "PHY_PORTS"]

SPARES_PER_GROUP = 2     # d2d.md §1.7: each 32-lane group can remap 2 lanes


def lane_config(config):
    """The lane-layer geometry of an adapter configuration."""
    return LaneConfig(config.lanes, config.bytes_per_cycle, SPARES_PER_GROUP)


def _phy_members(lc, p=""):
    repair = data.ArrayLayout(spare_layout(lc.group_lanes), lc.spares)
    return {
        f"{p}lanes_tx": Out(lc.slots * lc.ui), f"{p}lanes_tx_valid": Out(1), f"{p}sb_tx": Out(2),
        f"{p}lanes_rx": In(lc.slots * lc.ui), f"{p}lanes_rx_valid": In(1), f"{p}sb_rx": In(2),
        f"{p}start": In(1), f"{p}state": Out(4), f"{p}link_up": Out(1),
        f"{p}phy_retrains": Out(16), f"{p}tx_reverse": Out(1), f"{p}tx_width": Out(2),
        f"{p}tx_repair": Out(repair),
    }


PHY_PORTS = ("lanes_tx", "lanes_tx_valid", "sb_tx", "lanes_rx", "lanes_rx_valid", "sb_rx",
             "start", "state", "link_up", "phy_retrains", "tx_reverse", "tx_width", "tx_repair")
_PHY_IN = ("lanes_rx", "lanes_rx_valid", "sb_rx", "start")


class D2DTop(wiring.Component):
    """One die's D2D link: adapter + PHY (top module name ``d2d_top``).

    Members
    -------
    s0_i, s1_i, s0_o, s1_o : protocol streams (see :class:`~.adapter.D2DAdapter`).
    lanes_tx, lanes_tx_valid, sb_tx : Out
        Physical lanes (data lanes then spares), the Valid lane and the sideband, to the channel.
    lanes_rx, lanes_rx_valid, sb_rx : In
        From the channel.
    start : In(1)
        Train the link (low holds the PHY in RESET).
    state : Out(4)
        Training state (:class:`~.training.State`), ``link_up`` when ACTIVE.
    phy_retrains : Out(16)
    tx_reverse, tx_width, tx_repair : Out
        The lane configuration training chose for this die's transmitter.
    retrain_req : Out(1), overflow : Out(1), counters : Out(32) each (adapter).

    Latency: adapter + 1 clock in the lane TX + 1 clock in the lane RX.
    """

    def __init__(self, config=None):
        self._cfg = c = config or D2DConfig()
        self._adapter = D2DAdapter(c)
        self._lc = lc = lane_config(c)
        pw = 8 * c.payload_bytes
        olay = data.StructLayout({"data": pw, "last": 1})
        members = {
            "s0_i": In(stream.Signature(pw)),
            "s1_i": In(stream.Signature(pw)),
            "s0_o": Out(stream.Signature(olay)),
            "s1_o": Out(stream.Signature(olay)),
            **_phy_members(lc),
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
        lc = self._lc
        m.submodules.phy = phy = D2DPhy(lc.lanes, lc.bytes_per_cycle, lc.spares_per_group)
        for s in ("s0_i", "s1_i"):
            wiring.connect(m, wiring.flipped(getattr(self, s)), getattr(a, s))
        for s in ("s0_o", "s1_o"):
            wiring.connect(m, getattr(a, s), wiring.flipped(getattr(self, s)))
        m.d.comb += [
            phy.tx_data.eq(a.tx.payload), phy.tx_valid.eq(a.tx.valid), a.tx.ready.eq(phy.tx_ready),
            a.rx.payload.eq(phy.rx_data), a.rx.valid.eq(phy.rx_valid),
            a.link_up.eq(phy.link_up),
            phy.retrain_req.eq(a.retrain_req),
            self.retrain_req.eq(a.retrain_req), self.overflow.eq(a.overflow),
            self.phy_retrains.eq(phy.retrains),
        ]
        for name in PHY_PORTS:
            if name == "phy_retrains":
                continue
            if name in _PHY_IN:
                m.d.comb += getattr(phy, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(phy, name))
        for name in COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(a, name))
        return m


class LatencyMonitor(wiring.Component):
    """TX-accept -> RX-release latency of one stream in cycles (the adapter's latency counters).

    Parameters
    ----------
    depth : int
        Flits that can be accepted and not yet released (the stream's credits bound it).

    Members
    -------
    accept : In(1)
        A payload is accepted by the transmitting adapter this cycle (timestamp pushed).
    release : In(1)
        The consumer takes the last segment of a payload from the receiving adapter.
    lat_min, lat_max, lat_sum, lat_count : Out(32)
        Over all released payloads (``lat_min`` is all ones before the first).
    """

    def __init__(self, depth):
        self._depth = depth
        super().__init__({"accept": In(1), "release": In(1),
                          "lat_min": Out(32, init=0xFFFFFFFF), "lat_max": Out(32),
                          "lat_sum": Out(32), "lat_count": Out(32)})

    def elaborate(self, platform):
        m = Module()
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        m.submodules.ts = ts = SyncFIFO(width=32, depth=self._depth)
        lat = Signal(32)
        m.d.comb += [ts.w_data.eq(now), ts.w_en.eq(self.accept), ts.r_en.eq(self.release),
                     lat.eq(now - ts.r_data)]
        with m.If(self.release & ts.r_rdy):
            m.d.sync += [self.lat_sum.eq(self.lat_sum + lat), self.lat_count.eq(self.lat_count + 1)]
            with m.If(lat < self.lat_min):
                m.d.sync += self.lat_min.eq(lat)
            with m.If(lat > self.lat_max):
                m.d.sync += self.lat_max.eq(lat)
        return m


class D2DPair(wiring.Component):
    """Die A and die B for end-to-end simulation (top module name ``d2d_pair``).

    Members
    -------
    a_s0_i, a_s1_i : In(stream)
        Die A's protocol streams in.
    b_s0_o, b_s1_o : Out(stream)
        Die B's protocol streams out.
    a_<phy port>, b_<phy port>
        Each die's ``lanes_tx``, ``lanes_tx_valid``, ``sb_tx`` (to the channel), ``lanes_rx``,
        ``lanes_rx_valid``, ``sb_rx`` (from it), ``start``, ``state``, ``link_up``,
        ``phy_retrains``, ``tx_reverse``, ``tx_width``, ``tx_repair`` (see :class:`D2DTop`).
    a_retrain_req, b_retrain_req, a_overflow, b_overflow : Out(1)
    a_<counter>, b_<counter> : Out(32)
    lat_min, lat_max, lat_sum, lat_count : Out(32)
        End-to-end latency, die A stream accept -> die B release of the payload's last segment,
        both streams together (:class:`LatencyMonitor`).
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
            "lat_min": Out(32), "lat_max": Out(32), "lat_sum": Out(32), "lat_count": Out(32),
        }
        for die in "ab":
            members.update(_phy_members(lc, f"{die}_"))
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
        mons = []
        for k in range(2):
            # accepted, not released <= un-acked (replay buffer) + buffered in B (credits)
            mon = LatencyMonitor(self._cfg.stream_credits + self._cfg.depth + 2)
            m.submodules[f"lat{k}"] = mon
            i, o = getattr(self, f"a_s{k}_i"), getattr(self, f"b_s{k}_o")
            m.d.comb += [mon.accept.eq(i.valid & i.ready),
                         mon.release.eq(o.valid & o.ready & o.payload.last)]
            mons.append(mon)
        m0, m1 = mons
        m.d.comb += [
            self.lat_min.eq(Mux(m0.lat_min < m1.lat_min, m0.lat_min, m1.lat_min)),
            self.lat_max.eq(Mux(m0.lat_max > m1.lat_max, m0.lat_max, m1.lat_max)),
            self.lat_sum.eq(m0.lat_sum + m1.lat_sum),
            self.lat_count.eq(m0.lat_count + m1.lat_count),
        ]
        m.d.comb += [a.s0_o.ready.eq(1), a.s1_o.ready.eq(1), b.s0_i.valid.eq(0),
                     b.s1_i.valid.eq(0)]
        for die, d in (("a", a), ("b", b)):
            for name in PHY_PORTS:
                if name in _PHY_IN:
                    m.d.comb += getattr(d, name).eq(getattr(self, f"{die}_{name}"))
                else:
                    m.d.comb += getattr(self, f"{die}_{name}").eq(getattr(d, name))
            m.d.comb += [
                getattr(self, f"{die}_retrain_req").eq(d.retrain_req),
                getattr(self, f"{die}_overflow").eq(d.overflow),
            ]
            for name in COUNTERS:
                m.d.comb += getattr(self, f"{die}_{name}").eq(getattr(d, name))
        return m
