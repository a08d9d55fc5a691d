"""R x C systolic array of :class:`~diestack.hdl.npu.pe.PE` (:class:`PEArray`, no skew), and the
array unit the core uses (:class:`SystolicArray`: PE grid + input skew + output deskew)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import DATAFLOWS
from .pe import MUL_LATENCY, MULTIPLIERS, OS_RESULT_LATENCY, PE
from .skew import Skew

__all__ = ["PEArray", "SystolicArray", "LANE_LAYOUT", "COL_LAYOUT"]

#: One row lane at the array's left edge: A value, valid, flag (swap in WS / last step in OS).
LANE_LAYOUT = data.StructLayout({"a": signed(8), "v": 1, "f": 1})
#: One column at the top edge: B value (WS shadow preload / OS operand) and its shift enable.
COL_LAYOUT = data.StructLayout({"b": signed(8), "sh": 1})


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
    - OS: see :class:`PE`; the last K step entering at ``t + i + j`` puts PE[i][j]'s result
      in its drain register at ``t + i + j + OS_RESULT_LATENCY``; with ``drain[j]`` high for
      R cycles starting when all PEs of the column hold their result, ``d_out[j]`` shows rows
      R-1, R-2, ..., 0 of the tile.

    ``d_out`` is the bottom PE's ``d_out`` (WS) or ``q_out`` (OS) through one multiplexer when
    both dataflows are built.

    ``os`` reaches PE[i][j] ``j + 1`` cycles after it is presented (a register per row, then
    from PE to PE along the row); change it only while the array is empty.

    The row inputs and column inputs are consumed by registers inside the PEs.

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
            os_row = Signal(name=f"os_row{i}")       # one copy of the mode per row
            m.d.sync += os_row.eq(self.os)
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [pe.s_shift.eq(self.s_shift[j]), pe.drain.eq(self.drain[j])]
                if j == 0:
                    m.d.comb += [pe.a_in.eq(self.a[i]), pe.a_valid_in.eq(self.a_valid[i]),
                                 pe.a_flag_in.eq(self.a_flag[i]), pe.os.eq(os_row)]
                else:
                    left = pes[i][j - 1]
                    m.d.comb += [pe.a_in.eq(left.a_out), pe.a_valid_in.eq(left.a_valid_out),
                                 pe.a_flag_in.eq(left.a_flag_out), pe.os.eq(left.os_out)]
                if i == 0:
                    m.d.comb += [pe.s_in.eq(self.b[j]), pe.d_in.eq(0), pe.q_in.eq(0)]
                else:
                    up = pes[i - 1][j]
                    m.d.comb += [pe.s_in.eq(up.s_out), pe.d_in.eq(up.d_out), pe.q_in.eq(up.q_out)]
            # (a_out of the last column is unused)
        for j in range(C):
            bottom = pes[R - 1][j]
            if self._dataflow == "ws":
                m.d.comb += self.d_out[j].eq(bottom.d_out)
            elif self._dataflow == "os":
                m.d.comb += self.d_out[j].eq(bottom.q_out)
            else:   # WS partial sums or OS results (the bottom PE's copy of the mode)
                m.d.comb += self.d_out[j].eq(Mux(bottom.os_out, bottom.q_out, bottom.d_out))
        return m


class SystolicArray(wiring.Component):
    """The array unit: input skew, :class:`PEArray`, drain skew and output deskew.

    Row lanes and columns arrive aligned (all lanes of a row in the same cycle) and the skews turn
    them into the diagonal wavefront; the deskew realigns the column outputs.

    Timing: lane ``a[i]`` presented at cycle ``t`` reaches the PEs of row i at ``t + 1 + i``
    (column j at ``t + 1 + i + j``); column ``b[j]`` at ``t`` reaches the top PE of column j at
    ``t + 1 + j``. WS: the column sums of the A row presented at ``t`` are on ``d`` (all lanes
    together) at cycle ``t + 1 + R + C - 1 + MUL_LATENCY``. ``drain`` presented at ``t`` drains
    column j at ``t + j`` (OS). ``os`` may change only while the array is empty (it travels
    along the rows, see :class:`PEArray`). No back-pressure: one row per cycle.

    Parameters
    ----------
    rows, cols : int
        R and C (>= 1).
    dataflow : str
        ``"ws"``, ``"os"`` or ``"both"``.
    multiplier : str
        PE multiplier, ``"lut"`` or ``"dsp"``.
    io_regs : bool
        Register ``drain``/``os`` and ``d`` once more at the boundary (one cycle each; for
        synthesizing the unit alone, so that every path starts and ends at a register of the
        unit). The core uses ``io_regs=False``.

    Members
    -------
    a : In(Array(LANE_LAYOUT, R))
    b : In(Array(COL_LAYOUT, C))
    drain, os : In(1)
    d : Out(Array(signed(32), C))
    """

    def __init__(self, rows, cols, dataflow="both", multiplier="lut", *, io_regs=False):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TypeError(f"Array rows/cols must be positive integers, not {name}={v!r}")
        if dataflow not in DATAFLOWS:
            raise ValueError(f"Array dataflow must be one of {DATAFLOWS}, not {dataflow!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"Array multiplier must be one of {MULTIPLIERS}, not {multiplier!r}")
        self._rows, self._cols, self._dataflow = rows, cols, dataflow
        self._multiplier, self._io_regs = multiplier, bool(io_regs)
        super().__init__({
            "a": In(data.ArrayLayout(LANE_LAYOUT, rows)),
            "b": In(data.ArrayLayout(COL_LAYOUT, cols)),
            "drain": In(1),
            "os": In(1),
            "d": Out(data.ArrayLayout(signed(32), cols)),
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
        m.submodules.array = arr = PEArray(R, C, self._dataflow, self._multiplier)
        m.submodules.skew_a = skew_a = Skew(R, LANE_LAYOUT, base=1)
        m.submodules.skew_b = skew_b = Skew(C, COL_LAYOUT, base=1)
        m.submodules.skew_drain = skew_drain = Skew(C, unsigned(1), base=0)
        m.submodules.deskew = deskew = Skew(C, signed(32), base=0, reverse=True)
        drain, os = self.drain, self.os
        if self._io_regs:
            drain, os = Signal(), Signal()
            m.d.sync += [drain.eq(self.drain), os.eq(self.os), self.d.eq(deskew.o)]
        else:
            m.d.comb += self.d.eq(deskew.o)
        m.d.comb += [skew_a.i.eq(self.a), skew_b.i.eq(self.b), arr.os.eq(os),
                     skew_drain.i.eq(drain.replicate(C)), deskew.i.eq(arr.d_out)]
        for i in range(R):
            m.d.comb += [arr.a[i].eq(skew_a.o[i].a), arr.a_valid[i].eq(skew_a.o[i].v),
                         arr.a_flag[i].eq(skew_a.o[i].f)]
        for j in range(C):
            m.d.comb += [arr.b[j].eq(skew_b.o[j].b), arr.s_shift[j].eq(skew_b.o[j].sh),
                         arr.drain[j].eq(skew_drain.o[j])]
        return m
