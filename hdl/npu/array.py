"""R x C systolic array of :class:`~diestack.hdl.npu.pe.PE` (no skew: see :mod:`.skew`)."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import DATAFLOWS
from .pe import MUL_LATENCY, MULTIPLIERS, PE

__all__ = ["PEArray"]


class PEArray(wiring.Component):
    """A grid of R rows x C columns of PEs, neighbours connected register to register.

    Row i receives ``a[i]`` (with ``a_valid[i]``, ``a_flag[i]``) at its left edge; column j
    receives ``b[j]`` at its top edge (WS: shadow weight preload chain; OS: B values) with
    per-column ``s_shift[j]`` and ``drain[j]`` enables. ``d_out[j]`` is the register of the
    bottom PE of column j. The top ``d_in`` is zero.

    Timing (both dataflows): if ``a[i]`` carries a value at cycle ``t + i`` and ``b[j]`` at
    ``t + j``, PE[i][j] sees them at ``t + i + j``.

    - WS: ``d_out[j]`` at cycle ``t + R + j + MUL_LATENCY`` holds ``sum_i a_i * w[i][j]`` for
      the A row that entered row i at ``t + i`` (multiplier pipeline + one register per row).
    - OS: see :class:`PE`; with ``drain[j]`` high for R cycles starting when all PEs of the
      column hold their result, ``d_out[j]`` shows rows R-1, R-2, ..., 0 of the tile.

    The row inputs and column inputs are consumed by registers inside the PEs and every output
    is a register, so the array adds no combinational path to its surroundings.

    Parameters
    ----------
    rows, cols : int
        R and C (>= 1).
    dataflow : str
        ``"ws"``, ``"os"`` or ``"both"``.
    multiplier : str
        PE multiplier implementation, ``"lut"`` or ``"dsp"`` (:data:`.pe.MULTIPLIERS`).

    Members
    -------
    a : In(Array(signed(8), R)); a_valid, a_flag : In(R)
    b : In(Array(signed(8), C)); s_shift, drain : In(C)
    os : In(1)
    d_out : Out(Array(signed(32), C))
    """

    def __init__(self, rows, cols, dataflow="both", multiplier="lut"):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TypeError(f"Array {name} must be a positive integer, not {v!r}")
        if dataflow not in DATAFLOWS:
            raise ValueError(f"Array dataflow must be one of {DATAFLOWS}, not {dataflow!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"Array multiplier must be one of {MULTIPLIERS}, not {multiplier!r}")
        self._rows, self._cols, self._dataflow = rows, cols, dataflow
        self._multiplier = multiplier
        super().__init__({
            "a": In(data.ArrayLayout(signed(8), rows)),
            "a_valid": In(rows),
            "a_flag": In(rows),
            "b": In(data.ArrayLayout(signed(8), cols)),
            "s_shift": In(cols),
            "drain": In(cols),
            "os": In(1),
            "d_out": Out(data.ArrayLayout(signed(32), cols)),
        })

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        pes = [[PE(self._dataflow, self._multiplier) for _ in range(C)] for _ in range(R)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [pe.s_shift.eq(self.s_shift[j]), pe.drain.eq(self.drain[j]),
                             pe.os.eq(self.os)]
                if j == 0:
                    m.d.comb += [pe.a_in.eq(self.a[i]), pe.a_valid_in.eq(self.a_valid[i]),
                                 pe.a_flag_in.eq(self.a_flag[i])]
                else:
                    left = pes[i][j - 1]
                    m.d.comb += [pe.a_in.eq(left.a_out), pe.a_valid_in.eq(left.a_valid_out),
                                 pe.a_flag_in.eq(left.a_flag_out)]
                if i == 0:
                    m.d.comb += [pe.s_in.eq(self.b[j]), pe.d_in.eq(0)]
                else:
                    up = pes[i - 1][j]
                    m.d.comb += [pe.s_in.eq(up.s_out), pe.d_in.eq(up.d_out)]
            # (a_out of the last column is unused)
        for j in range(C):
            m.d.comb += self.d_out[j].eq(pes[R - 1][j].d_out)
        return m
