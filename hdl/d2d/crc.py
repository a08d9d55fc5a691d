"""Parallel CRC-16 of the D2D adapter (x^16 + x^15 + x^2 + 1 over 128-byte windows).

d2d.md §1.4 ([V] UCIe 1.1 p.73): generator 0x8005, initial value 0000h, no final XOR, bits taken
bit 0 -> 7 of byte 0 first, a message shorter than 128 bytes zero-extended on the MSB side, and the
CRC sent little-endian (CRC byte 0 = C[7:0]). The golden model is ``diestack.sim.d2d.golden``.

The datapath is built from GF(2) polynomial arithmetic: after a beat of ``n = 8*B`` bits the new
register is ``S*x^n + sum_p d_p * x^(16+n-1-p)  (mod G)`` where ``p`` is the bit's position in the
beat (byte i, bit j -> p = 8i + j). Zero extension by ``r`` beats multiplies by ``x^(8*B*r)``,
done in one cycle by log2(beats) conditional constant multiplies.
"""

from amaranth.hdl import Const, Mux, Signal, Module, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CRC16", "xpow_mod", "crc_matrix_columns", "gf2_matvec"]

POLY = 0x8005       # x^16 + x^15 + x^2 + 1 without the x^16 term (d2d.md §1.4)
WIDTH = 16
WINDOW_BYTES = 128  # d2d.md §1.4: "always computed over 128 bytes"


def xpow_mod(k, poly=POLY, width=WIDTH):
    """x^k mod G(x) as a ``width``-bit integer (bit i = coefficient of x^i)."""
    # square-and-multiply over GF(2)[x]/G
    base, result, e = 2, 1, k
    while e:
        if e & 1:
            result = _mulmod(result, base, poly, width)
        base = _mulmod(base, base, poly, width)
        e >>= 1
    return result


def _mulmod(a, b, poly, width):
    """a(x) * b(x) mod G(x) over GF(2); a, b reduced (< 2^width)."""
    result = 0
    for i in range(width):
        if (b >> i) & 1:
            result ^= a
        # a <- a * x mod G
        carry = (a >> (width - 1)) & 1
        a = (a << 1) & ((1 << width) - 1)
        if carry:
            a ^= poly
    return result


def crc_matrix_columns(n_bits):
    """Columns of the beat update for an ``n_bits`` beat.

    Returns ``(state_cols, data_cols)``: state bit k contributes ``state_cols[k]`` and data bit p
    (p = 0 processed first) contributes ``data_cols[p]`` to the next register.
    """
    state_cols = [xpow_mod(k + n_bits) for k in range(WIDTH)]
    data_cols = [xpow_mod(WIDTH + n_bits - 1 - p) for p in range(n_bits)]
    return state_cols, data_cols


def gf2_matvec(vec_bits, cols):
    """Emit the XOR network out = sum_k vec_bits[k] * cols[k] (GF(2)), one signal per output bit."""
    out = []
    for i in range(WIDTH):
        terms = [vec_bits[k] for k, c in enumerate(cols) if (c >> i) & 1]
        out.append(Cat(*terms).xor() if terms else Const(0, 1))
    return Cat(*out)


class CRC16(wiring.Component):
    """CRC-16 (x^16+x^15+x^2+1) over 128-byte windows, ``bytes_per_cycle`` bytes per clock.

    Feed one window as consecutive beats: the first with ``start``, the final one with ``last``
    (``start`` and ``last`` may be on the same beat). Byte ``i`` of a beat is ``data[8i+8:8i]``
    and is the ``i``-th byte of the beat in link order. Beats without ``valid`` are ignored, so the
    window may be fed with gaps. Bytes not part of the message (a partial last beat, the CRC
    positions of a flit) must be driven as 0. If ``last`` arrives before the window holds 128
    bytes, the remainder is zero-extended in the same cycle (d2d.md §1.4).

    Parameters
    ----------
    bytes_per_cycle : int
        Beat width in bytes, a power of two in 1..128 (it must divide the 128-byte window).

    Members
    -------
    data : In(8 * bytes_per_cycle)
    valid : In(1)
    start : In(1)
        This beat begins a window (the register restarts from 0000h).
    last : In(1)
        This beat ends the window.
    crc_comb : Out(16)
        Combinational CRC of the window ending with the present beat (meaningful when
        ``valid & last``), so a transmitter can insert the CRC in the same cycle.
    crc : Out(16)
        Registered CRC of the last completed window (bit i = C[i]; send ``crc[0:8]`` first).
    done : Out(1)
        One-cycle strobe, the cycle after the ``last`` beat: ``crc`` is new.

    Latency: ``crc_comb`` 0 cycles, ``crc``/``done`` 1 cycle after the ``last`` beat.
    Back-pressure: none; a beat is accepted every cycle ``valid`` is high.
    A window longer than 128 bytes (more than 128/B beats without ``last``) is not a valid input.
    """

    def __init__(self, bytes_per_cycle=16):
        if (isinstance(bytes_per_cycle, bool) or not isinstance(bytes_per_cycle, int)
                or not 1 <= bytes_per_cycle <= WINDOW_BYTES
                or bytes_per_cycle & (bytes_per_cycle - 1)):
            self._MustUse__used = True   # no "created but never used" warning for a rejected object
            raise TypeError(f"CRC16 bytes_per_cycle must be a power of two in 1..{WINDOW_BYTES}, "
                            f"not {bytes_per_cycle!r}")
        self._bpc = bytes_per_cycle
        super().__init__({
            "data": In(8 * bytes_per_cycle),
            "valid": In(1),
            "start": In(1),
            "last": In(1),
            "crc_comb": Out(WIDTH),
            "crc": Out(WIDTH),
            "done": Out(1),
        })

    @property
    def bytes_per_cycle(self):
        return self._bpc

    @property
    def beats_per_window(self):
        return WINDOW_BYTES // self._bpc

    def elaborate(self, platform):
        m = Module()
        n = 8 * self._bpc
        beats = self.beats_per_window
        state = Signal(WIDTH)
        count = Signal(range(beats + 1))      # beats already in the window before this one

        prev = Mux(self.start, 0, state)
        prev_count = Mux(self.start, 0, count)
        state_cols, data_cols = crc_matrix_columns(n)
        s_bits = [prev[k] for k in range(WIDTH)]
        d_bits = [self.data[p] for p in range(n)]
        stepped = Signal(WIDTH)
        m.d.comb += stepped.eq(gf2_matvec(s_bits, state_cols) ^ gf2_matvec(d_bits, data_cols))

        # Zero extension: remaining = beats - (prev_count + 1) beats of zeros, i.e. multiply by
        # x^(n * remaining); binary decomposition of remaining into conditional constant steps.
        remaining = Signal(range(beats + 1))
        m.d.comb += remaining.eq(beats - 1 - prev_count)
        cur = stepped
        bit = 0
        while (1 << bit) < beats:
            cols = [xpow_mod(k + n * (1 << bit)) for k in range(WIDTH)]
            sig = Signal(WIDTH, name=f"pad{bit}")
            mult = gf2_matvec([cur[k] for k in range(WIDTH)], cols)
            m.d.comb += sig.eq(Mux(remaining[bit], mult, cur))
            cur = sig
            bit += 1
        m.d.comb += self.crc_comb.eq(cur)

        m.d.sync += self.done.eq(0)
        with m.If(self.valid):
            m.d.sync += [state.eq(stepped), count.eq(prev_count + 1)]
            with m.If(self.last):
                m.d.sync += [self.crc.eq(cur), self.done.eq(1), count.eq(0), state.eq(0)]
        return m
