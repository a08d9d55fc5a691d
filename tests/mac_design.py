"""A tiny signed multiply-accumulate design that exercises the foundation (runner, synthesis)."""

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class MAC(wiring.Component):
    """acc <= clr ? 0 : acc + a*b, one cycle latency."""
    a: In(signed(8))
    b: In(signed(8))
    clr: In(1)
    acc: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clr):
            m.d.sync += self.acc.eq(0)
        with m.Else():
            m.d.sync += self.acc.eq(self.acc + self.a * self.b)
        return m
