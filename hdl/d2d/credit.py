"""Per-stream credit-based flow control for the D2D adapter.

The receiver owns a buffer of ``credits`` flits per protocol stream; the transmitter sends a *new*
flit on a stream only while it holds a credit for it. Credits come back in the flit header's CRED
bits (golden byte map: bit 2 -> +1 credit for stream 0, bit 3 -> +1 for stream 1), at most one per
stream per flit, on any flit travelling the other way; the receiver keeps a count of returns not
yet sent.

Loss tolerance. CRED bits on a *data* flit are stored in the replay buffer and applied by the
peer only when that flit is accepted in order, so they count exactly once. CRED bits on a
*control* flit are not protected by retry: if that flit fails its CRC the credit is gone. Two
rules keep the link safe and live anyway:

1. The receiver never overflows by construction: a new data flit that finds no room in its stream
   buffer is refused (not written, not acknowledged, Nak'd) and comes back by Go-Back-N replay
   (``RetryRx.room``). Nothing is dropped; ``refused`` counts it (0 in normal operation).
2. Leak recovery: a credit can only be lost when a flit from the peer failed its CRC. After such
   a failure (``lost_hint``), a stream that wants to send, has no credit and has seen no return
   for ``resync_timeout`` cycles takes its full credit back (``resyncs`` counts it). If the
   receiver was really full, rule 1 applies.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

__all__ = ["CreditTx", "CreditRx"]


class CreditTx(wiring.Component):
    """Transmit-side credit counter of one stream.

    Parameters
    ----------
    credits : int
        Receiver buffer size in flits (the initial credit).
    resync_timeout : int
        Stall cycles after a possible credit loss before the credit is restored.

    Members
    -------
    consume : In(1)
        A new flit of this stream is sent this cycle (uses one credit).
    ret : In(1)
        One credit came back (a CRED bit of this stream in an applied flit).
    want : In(1)
        The stream has a flit waiting (for the stall counter and leak recovery).
    lost_hint : In(1)
        A flit from the peer failed its CRC (a credit return may have been lost).
    available : Out(range(credits + 1))
    has_credit : Out(1)
    stall_cycles : Out(32)
        Cycles with ``want`` and no credit.
    resyncs : Out(32)
        Leak recoveries.

    Latency: a returned credit is usable the next cycle.
    """

    def __init__(self, credits, resync_timeout=256):
        if not isinstance(credits, int) or credits < 1:
            raise TypeError(f"credits must be a positive integer, not {credits!r}")
        if not isinstance(resync_timeout, int) or resync_timeout < 1:
            raise TypeError(f"resync_timeout must be a positive integer, not {resync_timeout!r}")
        self._credits = credits
        self._resync = resync_timeout
        super().__init__({
            "consume": In(1),
            "ret": In(1),
            "want": In(1),
            "lost_hint": In(1),
            "available": Out(range(credits + 1)),
            "has_credit": Out(1),
            "stall_cycles": Out(32),
            "resyncs": Out(32),
        })

    @property
    def credits(self):
        return self._credits

    def elaborate(self, platform):
        m = Module()
        in_flight = Signal(range(self._credits + 1))
        m.d.comb += [self.available.eq(self._credits - in_flight),
                     self.has_credit.eq(in_flight < self._credits)]
        back = self.ret & (in_flight != 0)
        m.d.sync += in_flight.eq(in_flight + self.consume - back)

        suspect = Signal()
        idle = Signal(range(self._resync + 1))
        stalled = self.want & ~self.has_credit
        with m.If(self.lost_hint):
            m.d.sync += suspect.eq(1)
        with m.If(stalled):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        with m.If(~stalled | self.ret):
            m.d.sync += idle.eq(0)
        with m.Elif(idle < self._resync):
            m.d.sync += idle.eq(idle + 1)
        with m.Elif(suspect):
            m.d.sync += [in_flight.eq(0), suspect.eq(0), idle.eq(0),
                         self.resyncs.eq(self.resyncs + 1)]
        return m


class CreditRx(wiring.Component):
    """Receive-side buffer of one stream, and the credits it owes the transmitter.

    Parameters
    ----------
    credits : int
        Buffer size in flits.
    width : int
        Width of one buffered segment.
    segments : int
        Buffer entries per flit (2 for latency-optimized flits released per half, else 1).

    Members
    -------
    w_data, w_last, w_en : In
        Write one segment; ``w_last`` marks the flit's last segment.
    room : Out(1)
        A whole new flit (``segments`` entries) fits: the retry receiver refuses a new flit
        otherwise, so a write never finds the buffer full.
    o : Out(stream.Signature({"data": width, "last": 1}))
        Buffered segments in order, with valid/ready back-pressure from the consumer.
    ret_pending : Out(1)
        A credit is owed: set the stream's CRED bit in the next flit sent.
    ret_sent : In(1)
        A flit carrying this stream's CRED bit was sent.
    level : Out(range(credits * segments + 1))
    overflow : Out(1)
        Sticky: a write found the buffer full (must never happen; tests assert 0).
    freed : Out(32)
        Flits taken by the consumer.

    Latency: a written segment is visible on ``o`` one cycle later. A flit's credit is owed from
    the cycle after the consumer takes its last segment.
    """

    def __init__(self, credits, width, segments=1):
        if not isinstance(credits, int) or credits < 1:
            raise TypeError(f"credits must be a positive integer, not {credits!r}")
        if not isinstance(width, int) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        if segments not in (1, 2):
            raise ValueError(f"segments must be 1 or 2, not {segments!r}")
        self._credits = credits
        self._width = width
        self._segments = segments
        self._layout = data.StructLayout({"data": width, "last": 1})
        depth = credits * segments
        super().__init__({
            "w_data": In(width),
            "w_last": In(1),
            "w_en": In(1),
            "room": Out(1),
            "o": Out(stream.Signature(self._layout)),
            "ret_pending": Out(1),
            "ret_sent": In(1),
            "level": Out(range(depth + 1)),
            "overflow": Out(1),
            "freed": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._credits * self._segments
        m.submodules.fifo = fifo = SyncFIFO(width=self._width + 1, depth=depth)
        m.d.comb += [
            fifo.w_data.eq(self.w_data | (self.w_last << self._width)),
            fifo.w_en.eq(self.w_en),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.data.eq(fifo.r_data[:self._width]),
            self.o.payload.last.eq(fifo.r_data[self._width]),
            fifo.r_en.eq(self.o.ready),
            self.level.eq(fifo.r_level),
            self.room.eq(fifo.r_level + self._segments <= depth),
        ]
        with m.If(self.w_en & ~fifo.w_rdy):
            m.d.sync += self.overflow.eq(1)
        pending = Signal(range(self._credits + 2))
        freed_now = self.o.valid & self.o.ready & self.o.payload.last
        m.d.comb += self.ret_pending.eq(pending != 0)
        m.d.sync += pending.eq(pending + freed_now - (self.ret_sent & (pending != 0)))
        with m.If(freed_now):
            m.d.sync += self.freed.eq(self.freed + 1)
        return m
