"""Requantization of int32 accumulator rows to int8 (scale, round-half-up shift, saturate, ReLU).

The exact rule (npu_contract, "Requant rule"; the same text is in sim/npu/golden.py):

    p = x * scale                                  (exact, 64-bit signed; x, scale int32)
    r = p + (1 << (shift - 1)) if shift > 0 else p (64-bit, cannot overflow: |p| <= 2**62)
    y = r >> shift                                 (arithmetic shift: floor division by 2**shift)
    y = max(y, 0) if relu
    y = min(max(y, -128), 127)

i.e. ``floor(x * scale / 2**shift + 1/2)``: round half up (towards +inf), then ReLU, then
saturation (ReLU before or after saturation gives the same result). ``shift`` is 0..63.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requant", "LATENCY"]

#: Cycles from ``i_valid`` to ``o_valid``.
LATENCY = 6


class Requant(wiring.Component):
    """C-lane requantizer, a fixed-latency pipeline (:data:`LATENCY` cycles, one row per cycle,
    no back-pressure: the user must be able to take every result).

    Mode 0 passes ``x`` through unchanged (same latency). Mode 1 returns the requantized int8 of
    lane j in bits [8j, 8j+8) of ``o_data`` (upper bits zero). Stages, each registered: input,
    four 16 x 16 partial products (4 DSP multipliers per lane), partial sums (+ rounding
    constant), 64-bit product, shift, clamp/ReLU.

    Members
    -------
    i_valid : In(1); x : In(Array(signed(32), C)); mode, relu : In(1); scale : In(signed(32));
    shift : In(range(64))
    o_valid : Out(1); o_data : Out(32*C)
    """

    def __init__(self, lanes):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Requant lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "i_valid": In(1), "x": In(data.ArrayLayout(signed(32), lanes)),
            "mode": In(1), "relu": In(1), "scale": In(signed(32)), "shift": In(unsigned(6)),
            "o_valid": Out(1), "o_data": Out(32 * lanes),
        })

    def elaborate(self, platform):
        m = Module()
        C = self._lanes
        ctl = data.StructLayout({"valid": 1, "mode": 1, "relu": 1, "shift": 6})
        row = data.ArrayLayout(signed(32), C)

        # Stage 1: input registers.
        # (the scale register is duplicated per lane: no high-fanout net into the multipliers)
        c1 = Signal(ctl); x1 = Signal(row)
        sc1 = [Signal(signed(32), name=f"sc1_{j}") for j in range(C)]
        m.d.sync += [c1.valid.eq(self.i_valid), c1.mode.eq(self.mode), c1.relu.eq(self.relu),
                     c1.shift.eq(self.shift), x1.eq(self.x)]
        m.d.sync += [sc1[j].eq(self.scale) for j in range(C)]
        # Stage 2: four 17 x 17 partial products (one DSP each); x = xh*2**16 + xl,
        # scale = sh*2**16 + sl with xl, sl unsigned 16-bit and xh, sh signed 16-bit.
        c2 = Signal(ctl); x2 = Signal(row); rnd2 = Signal(unsigned(63))
        m.d.sync += [c2.eq(c1), x2.eq(x1),
                     rnd2.eq((Const(1, 64) << c1.shift)[1:])]  # 1 << (shift-1), 0 for shift 0
        pll = [Signal(unsigned(32), name=f"pll_{j}") for j in range(C)]
        plh = [Signal(signed(33), name=f"plh_{j}") for j in range(C)]
        phl = [Signal(signed(33), name=f"phl_{j}") for j in range(C)]
        phh = [Signal(signed(32), name=f"phh_{j}") for j in range(C)]
        for j in range(C):
            xl = Signal(signed(17), name=f"xl_{j}"); xh = Signal(signed(16), name=f"xh_{j}")
            sl = Signal(signed(17), name=f"sl_{j}"); sh = Signal(signed(16), name=f"sh_{j}")
            m.d.comb += [xl.eq(x1[j][:16]), xh.eq(x1[j][16:]), sl.eq(sc1[j][:16]), sh.eq(sc1[j][16:])]
            m.d.sync += [pll[j].eq(xl * sl), plh[j].eq(xl * sh), phl[j].eq(xh * sl),
                         phh[j].eq(xh * sh)]
        # Stage 3: middle sum, and high:low (xl*sl < 2**32, so hh*2**32 + ll is a concatenation)
        # plus the rounding constant.
        c3 = Signal(ctl); x3 = Signal(row)
        mid3 = [Signal(signed(34), name=f"mid3_{j}") for j in range(C)]
        hl3 = [Signal(signed(64), name=f"hl3_{j}") for j in range(C)]
        m.d.sync += [c3.eq(c2), x3.eq(x2)]
        for j in range(C):
            m.d.sync += [mid3[j].eq(plh[j] + phl[j]),
                         hl3[j].eq(Cat(pll[j], phh[j]).as_signed() + rnd2)]
        # Stage 4: the rounded product r = x * scale + rnd (exact in 64 bits).
        c4a = Signal(ctl); x4a = Signal(row)
        r4 = [Signal(signed(64), name=f"r4_{j}") for j in range(C)]
        m.d.sync += [c4a.eq(c3), x4a.eq(x3)]
        m.d.sync += [r4[j].eq(hl3[j] + (mid3[j] << 16)) for j in range(C)]
        # Stage 5: arithmetic shift.
        c4 = Signal(ctl); x4 = Signal(row)
        y4 = [Signal(signed(64), name=f"y4_{j}") for j in range(C)]
        m.d.sync += [c4.eq(c4a), x4.eq(x4a)]
        m.d.sync += [y4[j].eq(r4[j] >> c4a.shift) for j in range(C)]
        # Stage 6: ReLU + saturation, or pass-through.
        q = Signal(data.ArrayLayout(signed(8), C))
        for j in range(C):
            lo = Mux(c4.relu, 0, -128)
            m.d.comb += q[j].eq(Mux(y4[j] > 127, 127, Mux(y4[j] < lo, lo, y4[j])))
        m.d.sync += [self.o_valid.eq(c4.valid),
                     self.o_data.eq(Mux(c4.mode, q.as_value(), x4.as_value()))]
        return m
