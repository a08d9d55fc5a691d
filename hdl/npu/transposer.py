"""Double-buffered R x R int8 transposer for the output-stationary dataflow."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Transposer"]


class Transposer(wiring.Component):
    """Write rows, read columns, with two R x R buffers so one fills while the other drains.

    OS needs A *columns* (``A[m0:m0+R][k]``, one per K step) while the scratchpad holds A *rows*
    (``A[m][k0:k0+R]``). A row written with ``w_en`` into buffer ``w_buf`` at row ``w_row``
    lands at the clock edge. ``col`` is column 0 of buffer ``r_buf`` (combinational from the
    buffer registers); ``r_shift`` shifts that buffer one column left at the clock edge, so
    successive ``r_shift`` cycles present columns 0, 1, 2, ... of what was written. Writes and
    reads may hit different buffers in the same cycle; a column read in the cycle after its
    group's last row write sees the new data.

    Parameters
    ----------
    size : int
        R (rows and columns of each buffer).

    Members
    -------
    w_en : In(1); w_buf : In(1); w_row : In(range(size)); w_data : In(Array(signed(8), size))
    r_shift : In(1); r_buf : In(1)
    col : Out(Array(signed(8), size))  -- element i = buffer[i][current column]
    """

    def __init__(self, size):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TypeError(f"Transposer size must be a positive integer, not {size!r}")
        self._size = size
        lay = data.ArrayLayout(signed(8), size)
        super().__init__({
            "w_en": In(1), "w_buf": In(1), "w_row": In(range(size)), "w_data": In(lay),
            "r_shift": In(1), "r_buf": In(1), "col": Out(lay),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._size
        bufs = [[Signal(data.ArrayLayout(signed(8), n), name=f"buf{b}_row{i}") for i in range(n)]
                for b in range(2)]
        for b in range(2):
            for i in range(n):
                row = bufs[b][i]
                with m.If(self.w_en & (self.w_buf == b) & (self.w_row == i)):
                    m.d.sync += row.eq(self.w_data)
                with m.Elif(self.r_shift & (self.r_buf == b)):
                    m.d.sync += [row[k].eq(row[k + 1]) for k in range(n - 1)]
        for i in range(n):
            with m.If(self.r_buf):
                m.d.comb += self.col[i].eq(bufs[1][i][0])
            with m.Else():
                m.d.comb += self.col[i].eq(bufs[0][i][0])
        return m
