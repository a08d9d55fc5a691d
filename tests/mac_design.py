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


class RAM(wiring.Component):
    """A 256 x 16-bit synchronous RAM: synthesis must keep it as memory, not flip-flops."""
    addr: In(8)
    wdata: In(16)
    we: In(1)
    rdata: Out(16)

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory
        m = Module()
        m.submodules.mem = mem = Memory(shape=16, depth=256, init=[])
        w, r = mem.write_port(), mem.read_port()
        m.d.comb += [w.addr.eq(self.addr), w.data.eq(self.wdata), w.en.eq(self.we),
                     r.addr.eq(self.addr), self.rdata.eq(r.data)]
        return m
