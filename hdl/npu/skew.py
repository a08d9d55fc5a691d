"""Input skew and output deskew: lane-dependent register delays for the systolic wavefront."""

from amaranth.hdl import Module, Signal, Shape
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Skew"]


class Skew(wiring.Component):
    """Delay lane ``l`` of ``lanes`` by ``base + l`` cycles (or ``base + lanes - 1 - l`` with
    ``reverse=True``, which undoes a forward skew: the deskew).

    A forward skew turns a row that arrives all at once into the diagonal wavefront the array
    needs (lane i enters i cycles later); the reverse one realigns the array's column outputs.
    Every delay is a chain of registers (no combinational path from ``i`` to ``o`` when
    ``base >= 1``). Continuous: no valid/ready, one element per lane per cycle.

    Parameters
    ----------
    lanes : int
        Number of lanes (>= 1).
    shape : shape-castable
        Shape of one lane's element.
    base : int
        Extra delay added to every lane (>= 0).
    reverse : bool
        Deskew order (lane 0 delayed most).

    Members
    -------
    i : In(Array(shape, lanes))
    o : Out(Array(shape, lanes))
    """

    def __init__(self, lanes, shape, *, base=1, reverse=False):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Skew lanes must be a positive integer, not {lanes!r}")
        if not isinstance(base, int) or base < 0:
            raise TypeError(f"Skew base must be a non-negative integer, not {base!r}")
        self._lanes, self._shape, self._base, self._reverse = lanes, shape, base, bool(reverse)
        super().__init__({
            "i": In(data.ArrayLayout(shape, lanes)),
            "o": Out(data.ArrayLayout(shape, lanes)),
        })

    def delay(self, lane):
        """Delay of ``lane`` in cycles."""
        return self._base + ((self._lanes - 1 - lane) if self._reverse else lane)

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            prev = self.i[lane]
            for k in range(self.delay(lane)):
                r = Signal(self._shape, name=f"l{lane}_d{k}")
                m.d.sync += r.eq(prev)
                prev = r
            m.d.comb += self.o[lane].eq(prev)
        return m
