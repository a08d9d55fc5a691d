"""Flit TX packer / serializer and RX deserializer / unpacker of the D2D adapter.

The byte maps are those of :mod:`diestack.sim.d2d.golden` (its docstring is the contract):
68B, standard 256B (both CRCs at the end), latency-optimized 256B (each 128-byte half ends with
its own CRC) and raw. The RTL only reads the map's constants (field slices, payload byte
positions, CRC windows); it checks itself against the golden packer/unpacker in
``tests/d2d/test_adapter.py``.

Beats: a flit travels as ``ceil(size / B)`` beats of ``B`` bytes (``B = bytes_per_cycle``, a power
of two in 4..128; byte ``i`` of a beat is bits ``[8i, 8i+8)``; flit byte ``k`` is byte ``k % B`` of
beat ``k // B``). When ``B`` does not divide the flit size (68B flits), the last beat is padded
with zero bytes, which belong to no CRC window; the pad costs lane bandwidth
(``flit_lane_bytes``) and the benchmark reports it.
"""

import math

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.d2d import golden
from .crc import CRC16

__all__ = ["FlitTx", "FlitRx", "flit_beats", "flit_lane_bytes", "tx_layout", "check_bytes_per_cycle"]

_FIELD_WIDTHS = {"pid": 2, "ack": 2, "cred": 2, "num": golden.SEQ_BITS, "acknum": golden.SEQ_BITS}


def check_bytes_per_cycle(bpc):
    if (isinstance(bpc, bool) or not isinstance(bpc, int) or not 4 <= bpc <= 128
            or bpc & (bpc - 1)):
        raise TypeError(f"bytes_per_cycle must be a power of two in 4..128, not {bpc!r}")
    return bpc


def flit_beats(fmt, bytes_per_cycle):
    """Beats one flit occupies on the lanes."""
    return math.ceil(golden.flit_format(fmt).size / bytes_per_cycle)


def flit_lane_bytes(fmt, bytes_per_cycle):
    """Lane bytes one flit occupies including the padding of its last beat."""
    return flit_beats(fmt, bytes_per_cycle) * bytes_per_cycle


def tx_layout(fmt):
    """Layout of one flit handed to :class:`FlitTx`: header fields (absent for raw) + payload."""
    f = golden.flit_format(fmt)
    fields = {name: _FIELD_WIDTHS[name] for name in f.fields}
    fields["payload"] = 8 * f.payload_bytes
    return data.StructLayout(fields)


def _windows(f, bpc):
    """Per CRC window: (lo, hi, pos, first_beat, last_beat, crc_beat)."""
    out = []
    for lo, hi, pos in f.windows:
        first, last, crc_beat = lo // bpc, (hi - 1) // bpc, (pos + 1) // bpc
        assert lo % bpc == 0 and crc_beat >= last and pos // bpc == crc_beat
        out.append((lo, hi, pos, first, last, crc_beat))
    return out


def _beat_mask(k, bpc, lo, hi):
    """Byte-enable mask (as bit mask) of flit bytes [lo, hi) inside beat k."""
    mask = 0
    for i in range(bpc):
        if lo <= k * bpc + i < hi:
            mask |= 0xFF << (8 * i)
    return mask


class FlitTx(wiring.Component):
    """Flit packer and serializer: one flit in, ``flit_beats`` beats out, CRCs inserted.

    Parameters
    ----------
    fmt : str
        ``"68"``, ``"256"``, ``"256lo"`` or ``"raw"`` (golden byte maps).
    bytes_per_cycle : int
        Beat width ``B`` in bytes.

    Members
    -------
    i : In(stream.Signature(tx_layout(fmt)))
        One flit per transfer: header field values and the payload bytes (payload byte ``k`` is
        bits ``[8k, 8k+8)``). Accepted when no flit is being sent or its last beat leaves this cycle,
        so flits go out back to back.
    o : Out(stream.Signature(8 * B))
        Beats in link order. ``o.ready`` low holds the beat (lane back-pressure).
    abort : In(1)
        Drop the flit being sent (the link went down; retry replays what mattered); while high no
        flit is accepted.

    Latency: the first beat of an accepted flit is on ``o`` one cycle after acceptance; the CRC of
    each window is computed while its beats leave (``CRC16`` with ``crc_comb``) and inserted into
    the beat that carries the CRC bytes.
    """

    def __init__(self, fmt, bytes_per_cycle):
        self._fmt = golden.flit_format(fmt)
        self._bpc = check_bytes_per_cycle(bytes_per_cycle)
        super().__init__({
            "i": In(stream.Signature(tx_layout(fmt))),
            "o": Out(stream.Signature(8 * bytes_per_cycle)),
            "abort": In(1),
        })

    @property
    def beats(self):
        return flit_beats(self._fmt, self._bpc)

    def elaborate(self, platform):
        m = Module()
        f, B = self._fmt, self._bpc
        nb = self.beats
        nbytes = nb * B
        buf = Signal(8 * nbytes)
        busy = Signal()
        cnt = Signal(range(nb))

        # Flit bytes from the header fields and payload (CRC positions and pad stay 0).
        byte_bits = [[Const(0, 1)] * 8 for _ in range(nbytes)]
        for name, slices in f.fields.items():
            v = getattr(self.i.payload, name)
            width = sum(msb - lsb + 1 for _, msb, lsb in slices)
            shift = width
            for byte, msb, lsb in slices:
                w = msb - lsb + 1
                shift -= w
                for b in range(w):
                    byte_bits[byte][lsb + b] = v[shift + b]
        payload = self.i.payload.payload
        for k, pos in enumerate(f.payload_index):
            for b in range(8):
                byte_bits[pos][b] = payload[8 * k + b]
        image = Cat(*[bit for byte in byte_bits for bit in byte])

        last_beat = Signal()
        m.d.comb += last_beat.eq(cnt == nb - 1)
        m.d.comb += self.i.ready.eq((~busy | (self.o.ready & last_beat)) & ~self.abort)
        with m.If(self.abort):
            m.d.sync += [busy.eq(0), cnt.eq(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(image), busy.eq(1), cnt.eq(0)]
        with m.Elif(self.o.ready & busy):
            with m.If(last_beat):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)

        beat = Signal(8 * B)
        with m.Switch(cnt):
            for k in range(nb):
                with m.Case(k):
                    m.d.comb += beat.eq(buf[8 * B * k: 8 * B * (k + 1)])

        wins = _windows(f, B)
        out = Signal(8 * B)
        m.d.comb += out.eq(beat)
        if wins:
            m.submodules.crc = crc = CRC16(B)
            stored = [Signal(16, name=f"crc{w}") for w in range(len(wins))]
            m.d.comb += crc.valid.eq(self.o.valid & self.o.ready & ~self.abort)
            with m.Switch(cnt):
                for k in range(nb):
                    with m.Case(k):
                        for w, (lo, hi, pos, first, last, crc_beat) in enumerate(wins):
                            if first <= k <= last:
                                m.d.comb += [
                                    crc.data.eq(beat & _beat_mask(k, B, lo, hi)),
                                    crc.start.eq(k == first),
                                    crc.last.eq(k == last),
                                ]
                                if k == last:
                                    m.d.sync += stored[w].eq(crc.crc_comb)
                        # insert CRC bytes carried by this beat
                        for w, (lo, hi, pos, first, last, crc_beat) in enumerate(wins):
                            if crc_beat == k:
                                value = crc.crc_comb if crc_beat == last else stored[w]
                                off = 8 * (pos - k * B)
                                m.d.comb += out[off:off + 16].eq(value)
        m.d.comb += [self.o.valid.eq(busy & ~self.abort), self.o.payload.eq(out)]
        return m


class FlitRx(wiring.Component):
    """Flit deserializer and unpacker with CRC check.

    Parameters
    ----------
    fmt : str
    bytes_per_cycle : int

    Members
    -------
    i : In(stream.Signature(8 * B))
        Beats from the lane layer; always accepted (``i.ready`` is 1). The first valid beat after
        reset (or ``flush``) starts a flit; flit framing then follows the beat count (the lanes'
        valid framing).
    flush : In(1)
        Forget a partly received flit (the link went down); the next beat starts a flit.
    ev_valid : Out(1)
        One-cycle strobe, the cycle after a checked part arrived: the first 128-byte half of a
        ``256lo`` flit (``ev_part == 0``) or a whole flit (``ev_part == 1``).
    ev_part : Out(1)
    ev_ok : Out(1)
        CRC result of the part: ``256lo`` part 0 -> window 0, part 1 -> window 1; other formats ->
        all windows. Always 1 for raw.
    pid, ack, cred, num, acknum : Out
        Header fields of the flit (from its first half); meaningful when ``ev_valid``.
    seg : Out(8 * payload_bytes)
        Payload bytes released by this event, starting at bit 0: the whole payload, or for
        ``256lo`` the first half's 122 bytes (part 0) / the second half's 126 bytes (part 1).

    Latency: ``ev_valid`` rises one cycle after the beat that completes the part.
    """

    def __init__(self, fmt, bytes_per_cycle):
        self._fmt = golden.flit_format(fmt)
        self._bpc = check_bytes_per_cycle(bytes_per_cycle)
        f = self._fmt
        members = {
            "i": In(stream.Signature(8 * bytes_per_cycle)),
            "flush": In(1),
            "ev_valid": Out(1),
            "ev_part": Out(1),
            "ev_ok": Out(1),
            "seg": Out(8 * f.payload_bytes),
        }
        for name in f.fields:
            members[name] = Out(_FIELD_WIDTHS[name])
        super().__init__(members)

    @property
    def beats(self):
        return flit_beats(self._fmt, self._bpc)

    @property
    def lo(self):
        return self._fmt.name == "256lo"

    def segments(self):
        """Payload byte count of each released segment, in order."""
        if self.lo:
            half = sum(1 for p in self._fmt.payload_index if p < 128)
            return [half, self._fmt.payload_bytes - half]
        return [self._fmt.payload_bytes]

    def elaborate(self, platform):
        m = Module()
        f, B = self._fmt, self._bpc
        nb = self.beats
        nbytes = nb * B
        buf = Signal(8 * nbytes)
        cnt = Signal(range(nb))
        m.d.comb += self.i.ready.eq(1)
        beat = self.i.payload
        take = Signal()
        m.d.comb += take.eq(self.i.valid & ~self.flush)

        with m.If(self.flush):
            m.d.sync += cnt.eq(0)
        with m.If(take):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == nb - 1):
                m.d.sync += cnt.eq(0)
            with m.Switch(cnt):
                for k in range(nb):
                    with m.Case(k):
                        m.d.sync += buf[8 * B * k: 8 * B * (k + 1)].eq(beat)

        wins = _windows(f, B)
        calc = [Signal(16, name=f"calc{w}") for w in range(len(wins))]
        if wins:
            m.submodules.crc = crc = CRC16(B)
            m.d.comb += crc.valid.eq(take)
            with m.Switch(cnt):
                for k in range(nb):
                    with m.Case(k):
                        for w, (lo, hi, pos, first, last, crc_beat) in enumerate(wins):
                            if first <= k <= last:
                                m.d.comb += [
                                    crc.data.eq(beat & _beat_mask(k, B, lo, hi)),
                                    crc.start.eq(k == first),
                                    crc.last.eq(k == last),
                                ]
                                if k == last:
                                    with m.If(take):
                                        m.d.sync += calc[w].eq(crc.crc_comb)

        # Event strobes.
        lo_mode = self.lo
        half_beat = wins[0][4] if lo_mode else None
        m.d.sync += self.ev_valid.eq(0)
        with m.If(take):
            with m.If(cnt == nb - 1):
                m.d.sync += [self.ev_valid.eq(1), self.ev_part.eq(1)]
            if lo_mode:
                with m.If(cnt == half_beat):
                    m.d.sync += [self.ev_valid.eq(1), self.ev_part.eq(0)]

        def fbyte(i):
            return buf[8 * i: 8 * i + 8]

        oks = []
        for w, (lo, hi, pos, *_rest) in enumerate(wins):
            ok = Signal(name=f"ok{w}")
            m.d.comb += ok.eq(Cat(fbyte(pos), fbyte(pos + 1)) == calc[w])
            oks.append(ok)
        if not wins:
            m.d.comb += self.ev_ok.eq(1)
        elif lo_mode:
            m.d.comb += self.ev_ok.eq(oks[0])
            with m.If(self.ev_part):
                m.d.comb += self.ev_ok.eq(oks[1])
        else:
            m.d.comb += self.ev_ok.eq(Cat(*oks).all())

        # Header fields.
        for name, slices in f.fields.items():
            parts = []
            for byte, msb, lsb in slices:
                parts.append(fbyte(byte)[lsb:msb + 1])
            m.d.comb += getattr(self, name).eq(Cat(*reversed(parts)))

        # Payload segments.
        if lo_mode:
            n0 = self.segments()[0]
            seg0 = Cat(*[fbyte(p) for p in f.payload_index[:n0]])
            seg1 = Cat(*[fbyte(p) for p in f.payload_index[n0:]])
            with m.If(self.ev_part):
                m.d.comb += self.seg.eq(seg1)
            with m.Else():
                m.d.comb += self.seg.eq(seg0)
        else:
            m.d.comb += self.seg.eq(Cat(*[fbyte(p) for p in f.payload_index]))
        return m
