"""Go-Back-N retry of the D2D adapter (d2d.md §1.5: PCIe Flit-Mode retry without selective Nak).

Transmitter (:class:`RetryTx`): every new data flit gets the next sequence number (10 bits,
``golden.SEQ_BITS``) and a copy in the replay buffer; the buffer frees on a cumulative Ack. A Nak
``n`` (flits up to ``n`` good, ``n+1`` failed) or the replay timer rewinds the send pointer to the
oldest unacknowledged flit and everything from there is sent again, in order. After
``max_fails`` consecutive rewinds without forward progress the transmitter asks for a retrain
(one-cycle ``retrain`` strobe); the replay buffer survives the retrain, so nothing is lost.

Receiver (:class:`RetryRx`): accepts only the expected sequence number with a good CRC, discards
duplicates, and reports ``Ack E-1`` or, after a bad CRC / a gap / a flit it has no room for,
``Nak E-1`` until the expected flit arrives. For latency-optimized flits the first half is
released as soon as its own CRC passes; if the second half then fails, the replayed flit's first
half is recognised (same sequence number, ``half_done``) and not released twice.

Replay buffer sizing rule (d2d.md §1.5 "Depth >= link bandwidth x Ack round trip")
------------------------------------------------------------------------------------
The transmitter can only keep the link busy if it may have a full Ack round trip of flits
unacknowledged::

    rtt_cycles = 3 * F + 2 * flight + pipeline
    depth      = next_pow2(ceil(rtt_cycles / F) + margin)

with ``F`` the cycles one flit occupies on the lanes (its serialization time), ``flight`` the
one-way channel latency in cycles and ``pipeline`` the fixed TX + lane + RX register stages of
both directions. ``3 * F`` counts the data flit's serialization, the wait for the next reverse
flit that can carry the Ack (up to one flit time) and that flit's serialization. ``margin`` (2
flits) covers the Ack being processed after the reverse flit's CRC. :func:`replay_depth_for`
computes it; the adapter uses it for its default depth and the same round trip for its default
credits and replay timer.
"""

import math

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.d2d import golden

__all__ = ["RetryTx", "RetryRx", "replay_depth_for", "round_trip_cycles", "PIPELINE_CYCLES"]

SEQ_BITS = golden.SEQ_BITS
PIPELINE_CYCLES = 10     # TX flit register + lane TX/RX stages + RX event + ack use, both ways


def round_trip_cycles(flit_cycles, flight_cycles, pipeline=PIPELINE_CYCLES):
    """Ack round trip in cycles (see the module docstring)."""
    return 3 * flit_cycles + 2 * flight_cycles + pipeline


def replay_depth_for(flit_cycles, flight_cycles, margin=2, pipeline=PIPELINE_CYCLES):
    """Replay-buffer depth in flits by the sizing rule: round trip in flits + margin, power of 2."""
    if flit_cycles < 1 or flight_cycles < 0:
        raise ValueError("flit_cycles must be >= 1 and flight_cycles >= 0")
    n = math.ceil(round_trip_cycles(flit_cycles, flight_cycles, pipeline) / flit_cycles) + margin
    return 1 << (n - 1).bit_length()


class RetryTx(wiring.Component):
    """Go-Back-N transmitter: sequence numbers, replay buffer, replay timer, retrain escalation.

    Parameters
    ----------
    width : int
        Bits stored per flit (payload and the header fields that must replay unchanged).
    depth : int
        Replay-buffer depth in flits, a power of two in 2..512 (``replay_depth_for``).
    timeout : int
        Replay timer in cycles: with flits outstanding and no Ack progress for this long, replay.
    max_fails : int
        Consecutive replays without progress that trigger a retrain request.

    Members
    -------
    i : In(stream.Signature(width))
        New flits. Taken only when the downstream takes a flit, no replay is in progress and the
        buffer has room.
    o : Out(stream.Signature({"meta": width, "seq": 10, "replay": 1}))
        Flits to send: replayed ones first, then new ones (passed through combinationally).
    ack_valid, ack_num, ack_nak : In
        Ack/Nak number from a good flit of the peer (cumulative; stale or impossible numbers
        are ignored). A Nak rewinds once per number; the timer covers a lost replay.
    pause : In(1)
        The link is down (training): the replay timer holds.
    retrain : Out(1)
        One-cycle retrain request.
    outstanding : Out(range(depth + 1))
    replays, replayed_flits, timeouts, retrains : Out(32)
        Counters: rewinds, flits sent again, timer expiries, retrain requests.
    """

    def __init__(self, width, depth, *, timeout, max_fails=8):
        try:
            self._check(width, depth, timeout, max_fails)
        except (TypeError, ValueError):
            self._MustUse__used = True   # no "never used" warning for a rejected object
            raise
        self._width, self._depth, self._timeout, self._max_fails = width, depth, timeout, max_fails
        self._olayout = data.StructLayout({"meta": width, "seq": SEQ_BITS, "replay": 1})
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(self._olayout)),
            "ack_valid": In(1),
            "ack_num": In(SEQ_BITS),
            "ack_nak": In(1),
            "pause": In(1),
            "retrain": Out(1),
            "outstanding": Out(range(depth + 1)),
            "replays": Out(32),
            "replayed_flits": Out(32),
            "timeouts": Out(32),
            "retrains": Out(32),
        })

    @staticmethod
    def _check(width, depth, timeout, max_fails):
        if not isinstance(width, int) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        if (not isinstance(depth, int) or depth < 2 or depth > (1 << (SEQ_BITS - 1))
                or depth & (depth - 1)):
            raise ValueError(f"replay depth must be a power of two in 2..{1 << (SEQ_BITS - 1)}, "
                             f"not {depth!r}")
        if not isinstance(timeout, int) or timeout < 4:
            raise ValueError(f"replay timeout must be an integer >= 4 cycles, not {timeout!r}")
        if not isinstance(max_fails, int) or max_fails < 1:
            raise ValueError(f"max_fails must be a positive integer, not {max_fails!r}")

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        S = SEQ_BITS
        D = self._depth
        ab = (D - 1).bit_length()
        next_seq = Signal(S)
        una = Signal(S)
        send_ptr = Signal(S)

        out = Signal(S)
        m.d.comb += out.eq(next_seq - una)
        m.d.comb += self.outstanding.eq(out)
        full = out == D
        replaying = Signal()
        m.d.comb += replaying.eq(send_ptr != next_seq)

        m.submodules.mem = mem = Memory(shape=self._width, depth=D, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(send_ptr[:ab])

        m.d.comb += [
            self.o.valid.eq(replaying | (self.i.valid & ~full)),
            self.o.payload.meta.eq(Mux(replaying, rd.data, self.i.payload)),
            self.o.payload.seq.eq(send_ptr),
            self.o.payload.replay.eq(replaying),
            self.i.ready.eq(self.o.ready & ~replaying & ~full),
        ]
        hs = Signal()
        new_hs = Signal()
        m.d.comb += [hs.eq(self.o.valid & self.o.ready), new_hs.eq(hs & ~replaying)]
        m.d.comb += [wr.en.eq(new_hs), wr.addr.eq(next_seq[:ab]), wr.data.eq(self.i.payload)]
        with m.If(hs & replaying):
            m.d.sync += self.replayed_flits.eq(self.replayed_flits + 1)

        ns_after = Signal(S)
        sp_after = Signal(S)
        m.d.comb += [ns_after.eq(next_seq + new_hs), sp_after.eq(send_ptr + hs)]

        # Ack / Nak
        a1 = Signal(S)
        adv = Signal(S)
        m.d.comb += [a1.eq(self.ack_num + 1), adv.eq(a1 - una)]
        ack_ok = Signal()
        progress = Signal()
        m.d.comb += [ack_ok.eq(self.ack_valid & (adv <= out)), progress.eq(ack_ok & (adv != 0))]
        una_n = Signal(S)
        m.d.comb += una_n.eq(Mux(ack_ok, a1, una))
        last_nak = Signal(S)
        last_nak_valid = Signal()
        nak_event = Signal()
        m.d.comb += nak_event.eq(ack_ok & self.ack_nak
                                 & ~(last_nak_valid & (last_nak == self.ack_num)))
        with m.If(nak_event):
            m.d.sync += [last_nak.eq(self.ack_num), last_nak_valid.eq(1)]
        with m.Elif(progress):
            m.d.sync += last_nak_valid.eq(0)

        # Replay timer
        timer = Signal(range(self._timeout + 1))
        expire = Signal()
        m.d.comb += expire.eq((timer >= self._timeout) & (out != 0) & ~self.pause)
        pending_after = Signal(S)
        m.d.comb += pending_after.eq(ns_after - una_n)
        go_back = Signal()
        m.d.comb += go_back.eq((nak_event | expire) & (pending_after != 0))
        with m.If(progress | go_back | (pending_after == 0)):
            m.d.sync += timer.eq(0)
        with m.Elif(self.pause):
            pass
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        with m.If(expire):
            m.d.sync += self.timeouts.eq(self.timeouts + 1)

        behind = Signal()
        m.d.comb += behind.eq((sp_after - una_n) > pending_after)
        m.d.sync += [next_seq.eq(ns_after), una.eq(una_n)]
        with m.If(go_back | behind):
            m.d.sync += send_ptr.eq(una_n)
        with m.Else():
            m.d.sync += send_ptr.eq(sp_after)

        # Escalation
        fails = Signal(range(self._max_fails + 1))
        m.d.sync += self.retrain.eq(0)
        with m.If(go_back):
            m.d.sync += self.replays.eq(self.replays + 1)
            with m.If(fails + 1 >= self._max_fails):
                m.d.sync += [fails.eq(0), self.retrain.eq(1), self.retrains.eq(self.retrains + 1)]
            with m.Else():
                m.d.sync += fails.eq(fails + 1)
        with m.Elif(progress):
            m.d.sync += fails.eq(0)
        return m


class RetryRx(wiring.Component):
    """Go-Back-N receiver: in-order acceptance, duplicate discard, Ack/Nak state.

    Parameters
    ----------
    lo : bool
        Latency-optimized flits: events come per half (part 0 then part 1).

    Members
    -------
    ev_valid, ev_part, ev_ok : In
        A checked flit part from :class:`FlitRx`.
    ev_data : In(1)
        The flit is a data flit (PID != 0); from the header, so only meaningful with a good part 0.
    ev_seq : In(10)
        Its sequence number.
    room : In(1)
        The destination stream buffer can take this flit's segments (checked for new flits).
    deliver : Out(1)
        Write this event's payload segment to the stream buffer (combinational).
    header_ok : Out(1)
        The header of this event is trustworthy: use its Ack/Nak (combinational).
    new_flit : Out(1)
        First delivery of a data flit (apply its credit-return bits once; combinational).
    ack_num : Out(10)
        ``E - 1``: the last in-order flit received.
    nak : Out(1)
        The receiver waits for a replay (send Nak instead of Ack).
    crc_errors, duplicates, refused, accepted : Out(32)
        Counters: flits with a CRC failure, discarded duplicates, new flits refused for lack of
        room (a credit-protocol fallback; 0 in normal operation), flits accepted.
    """

    def __init__(self, lo=False):
        self._lo = bool(lo)
        super().__init__({
            "ev_valid": In(1),
            "ev_part": In(1),
            "ev_ok": In(1),
            "ev_data": In(1),
            "ev_seq": In(SEQ_BITS),
            "room": In(1),
            "deliver": Out(1),
            "header_ok": Out(1),
            "new_flit": Out(1),
            "ack_num": Out(SEQ_BITS),
            "nak": Out(1),
            "crc_errors": Out(32),
            "duplicates": Out(32),
            "refused": Out(32),
            "accepted": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        S = SEQ_BITS
        exp = Signal(S)
        m.d.comb += self.ack_num.eq(exp - 1)
        match = Signal()
        ahead = Signal()
        diff = Signal(S)
        m.d.comb += [diff.eq(self.ev_seq - exp), match.eq(diff == 0),
                     ahead.eq((diff != 0) & ~diff[S - 1])]
        half_done = Signal()
        cur_ok = Signal()
        cur_match = Signal()

        def data_head(last):
            """Event carrying a good header of a data flit."""
            with m.If(match):
                if last:
                    with m.If(self.room):
                        m.d.comb += [self.deliver.eq(1), self.new_flit.eq(1)]
                        m.d.sync += [exp.eq(exp + 1), self.nak.eq(0),
                                     self.accepted.eq(self.accepted + 1)]
                    with m.Else():
                        m.d.sync += [self.nak.eq(1), self.refused.eq(self.refused + 1)]
                else:
                    with m.If(half_done):
                        m.d.sync += cur_match.eq(1)
                    with m.Elif(self.room):
                        m.d.comb += [self.deliver.eq(1), self.new_flit.eq(1)]
                        m.d.sync += [cur_match.eq(1), half_done.eq(1)]
                    with m.Else():
                        m.d.sync += [cur_match.eq(0), self.nak.eq(1),
                                     self.refused.eq(self.refused + 1)]
            with m.Else():
                m.d.sync += cur_match.eq(0)
                with m.If(ahead):
                    m.d.sync += self.nak.eq(1)
                with m.Else():
                    m.d.sync += self.duplicates.eq(self.duplicates + 1)

        with m.If(self.ev_valid):
            first = ~self.ev_part if self._lo else 1
            with m.If(first):
                m.d.sync += [cur_ok.eq(self.ev_ok), cur_match.eq(0)]
                with m.If(~self.ev_ok):
                    m.d.sync += [self.nak.eq(1), self.crc_errors.eq(self.crc_errors + 1)]
                with m.Else():
                    m.d.comb += self.header_ok.eq(1)
                    with m.If(self.ev_data):
                        data_head(last=not self._lo)
                    with m.Else():
                        m.d.comb += self.new_flit.eq(1)     # control flit: apply its credits
            if self._lo:
                with m.Else():
                    with m.If(cur_ok):
                        with m.If(~self.ev_ok):
                            m.d.sync += [self.nak.eq(1), self.crc_errors.eq(self.crc_errors + 1)]
                        with m.Elif(cur_match):
                            m.d.comb += self.deliver.eq(1)
                            m.d.sync += [exp.eq(exp + 1), self.nak.eq(0), half_done.eq(0),
                                         self.accepted.eq(self.accepted + 1)]
        return m
