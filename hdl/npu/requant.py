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

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requant", "LATENCY"]

#: Cycles from ``i_valid`` to ``o_valid``.
LATENCY = 5


class Requant(wiring.Component):
    """C-lane requantizer, a fixed-latency pipeline (:data:`LATENCY` cycles, one row per cycle,
    no back-pressure: the user must be able to take every result).

    Mode 0 passes ``x`` through unchanged (same latency). Mode 1 returns the requantized int8 of
    lane j in bits [8j, 8j+8) of ``o_data`` (upper bits zero). Stages: input register, 32 x 32
    multiply, rounding add, shift, clamp/ReLU — each registered.

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
        c1 = Signal(ctl); x1 = Signal(row); sc1 = Signal(signed(32))
        m.d.sync += [c1.valid.eq(self.i_valid), c1.mode.eq(self.mode), c1.relu.eq(self.relu),
                     c1.shift.eq(self.shift), x1.eq(self.x), sc1.eq(self.scale)]
        # Stage 2: products (and the rounding constant).
        c2 = Signal(ctl); x2 = Signal(row); rnd2 = Signal(unsigned(63))
        p2 = [Signal(signed(64), name=f"p2_{j}") for j in range(C)]
        m.d.sync += [c2.eq(c1), x2.eq(x1),
                     rnd2.eq((Const(1, 64) << c1.shift)[1:])]  # 1 << (shift-1), 0 for shift 0
        m.d.sync += [p2[j].eq(x1[j] * sc1) for j in range(C)]
        # Stage 3: rounding add.
        c3 = Signal(ctl); x3 = Signal(row)
        r3 = [Signal(signed(64), name=f"r3_{j}") for j in range(C)]
        m.d.sync += [c3.eq(c2), x3.eq(x2)]
        m.d.sync += [r3[j].eq(p2[j] + rnd2) for j in range(C)]
        # Stage 4: arithmetic shift.
        c4 = Signal(ctl); x4 = Signal(row)
        y4 = [Signal(signed(64), name=f"y4_{j}") for j in range(C)]
        m.d.sync += [c4.eq(c3), x4.eq(x3)]
        m.d.sync += [y4[j].eq(r3[j] >> c3.shift) for j in range(C)]
        # Stage 5: ReLU + saturation, or pass-through.
        q = Signal(data.ArrayLayout(signed(8), C))
        for j in range(C):
            lo = Mux(c4.relu, 0, -128)
            m.d.comb += q[j].eq(Mux(y4[j] > 127, 127, Mux(y4[j] < lo, lo, y4[j])))
        m.d.sync += [self.o_valid.eq(c4.valid),
                     self.o_data.eq(Mux(c4.mode, q.as_value(), x4.as_value()))]
        return m
