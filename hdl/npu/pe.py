"""Processing element of the systolic array: int8 x int8 -> int32 MAC, WS and/or OS.

npu.md §"What the best generator offers": the PE double-buffers the stationary operand so the
next weight tile preloads behind the current compute.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import DATAFLOWS

__all__ = ["PE", "MUL_LATENCY", "OS_RESULT_LATENCY", "MULTIPLIERS"]

#: Cycles from the operands (``a_in`` and the weight/B) to the registered product: an operand
#: register, then one adder level per stage (pairs, quads, product), so that no path between
#: registers holds more than one short carry chain (ECP5 at >= 150 MHz).
MUL_LATENCY = 4
#: ``"lut"``: shift-and-add in logic, pipelined (no DSP block: an FPGA's DSP columns add long
#: routes and ~4 ns of combinational delay on ECP5, and 16x16 needs more DSPs than an
#: ECP5-85k has); ``"dsp"``: an ``a * b`` operator for the synthesizer to map (register after).
MULTIPLIERS = ("lut", "dsp")
#: OS: cycles from the operands of a tile's last K step to its result in the drain register
#: ``q_out`` (multiplier, accumulate, then a copy into ``q``: no multiplexer after the adder).
OS_RESULT_LATENCY = MUL_LATENCY + 2


class PE(wiring.Component):
    """One multiply-accumulate cell.

    Data moves: ``a`` (int8, with ``a_valid`` and ``a_flag``) from left to right, ``s`` (int8)
    from top to bottom, ``d`` (int32, WS partial sums) and ``q`` (int32, OS results) from top
    to bottom. Every output is a register: the ``*_out`` ports of a PE feed the ``*_in`` ports
    of its right/lower neighbour.

    One 32-bit adder serves both dataflows; its output goes straight into the registers (``d``
    in WS, ``acc`` in OS; the other one is held at zero by a synchronous reset) and its input
    is ``d_in | acc`` (or zero after a finished OS sum): one LUT level before the carry chain,
    none after it, and no mode bit on the path (the ECP5 Fmax path).

    Weight-stationary (``os`` = 0)
        ``s`` is the shadow weight register; it takes ``s_in`` in cycles where ``s_shift`` is
        high (the preload chain runs down the column while the active weight ``w`` computes).
        When ``a_valid & a_flag`` arrive (the first row of a tile with new weights) the PE uses
        and keeps the shadow weight: ``w <= s`` (the "propagate/swap" of the double buffer; the
        flag travels with the data, so the swap follows the skewed wavefront).
        ``d_out = d_in + a * w``, with the product pipelined (:data:`MUL_LATENCY` cycles): the
        psum leaving the PE is ``MUL_LATENCY + 1`` cycles after ``a_in``; a lower neighbour sees
        its ``a`` one cycle later than this PE, so its product meets this psum (the column sum
        advances one row per cycle whatever the multiplier latency).
    Output-stationary (``os`` = 1)
        ``s`` carries B down the column (``s_shift`` must be high every cycle); the PE
        accumulates ``acc += a_in * s_in``. When ``a_valid & a_flag`` arrive (the last K step
        of the tile), the finished sum goes (:data:`OS_RESULT_LATENCY` cycles later) to
        ``q_out`` and ``acc`` restarts from zero (double-buffered output). ``drain`` shifts
        ``q`` down the column (``q_out <= q_in``) so results leave at the bottom, last row
        first. ``acc`` is held at zero while ``os`` = 0, ``d_out`` while ``os`` = 1 (so the
        mode must change only while the array is empty).

    Invalid cycles must carry ``a_in = 0`` (the array feeder guarantees it).

    Parameters
    ----------
    dataflow : str
        ``"ws"``, ``"os"`` or ``"both"``: which of the two behaviours is built.
    multiplier : str
        ``"lut"`` or ``"dsp"`` (see :data:`MULTIPLIERS`); same latency.

    Members
    -------
    a_in, a_valid_in, a_flag_in : In
        From the left neighbour (or the row feeder).
    a_out, a_valid_out, a_flag_out : Out
        Registered copies for the right neighbour (latency 1).
    s_in : In(signed(8)); s_out : Out(signed(8))
        Shadow weight / B chain (``s_out`` is this PE's ``s`` register).
    d_in : In(signed(32)); d_out : Out(signed(32))
        Partial sum chain (WS).
    q_in : In(signed(32)); q_out : Out(signed(32))
        Result drain chain (OS; only built with OS support).
    s_shift, drain, os : In(1)
        Column controls (``drain`` only with OS support, ``os`` selects the mode with "both").
    os_out : Out(1)
        Registered copy of ``os`` for the right neighbour (the mode travels along the row like
        the data, so that no single register drives every PE).
    """

    a_in: In(signed(8))
    a_valid_in: In(1)
    a_flag_in: In(1)
    a_out: Out(signed(8))
    a_valid_out: Out(1)
    a_flag_out: Out(1)
    s_in: In(signed(8))
    s_out: Out(signed(8))
    d_in: In(signed(32))
    d_out: Out(signed(32))
    q_in: In(signed(32))
    q_out: Out(signed(32))
    s_shift: In(1)
    drain: In(1)
    os: In(1)
    os_out: Out(1)

    def __init__(self, dataflow="both", multiplier="lut"):
        if dataflow not in DATAFLOWS:
            raise ValueError(f"PE dataflow must be one of {DATAFLOWS}, not {dataflow!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"PE multiplier must be one of {MULTIPLIERS}, not {multiplier!r}")
        self._dataflow = dataflow
        self._multiplier = multiplier
        super().__init__()

    @property
    def dataflow(self):
        return self._dataflow

    def elaborate(self, platform):
        m = Module()
        has_ws = self._dataflow in ("ws", "both")
        has_os = self._dataflow in ("os", "both")
        if not has_os:
            os = Const(0, 1)
        elif not has_ws:
            os = Const(1, 1)
        else:
            os = self.os

        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.a_valid_out.eq(self.a_valid_in),
            self.a_flag_out.eq(self.a_flag_in),
            self.os_out.eq(self.os),
        ]
        flag = Signal()
        m.d.comb += flag.eq(self.a_valid_in & self.a_flag_in)

        s = self.s_out
        with m.If(self.s_shift):
            m.d.sync += s.eq(self.s_in)

        # Operand stage: a is registered (a_r) next to the multiplier's B operand w, a register
        # too: the active weight (WS: it takes the shadow s on the swap cycle, so the row that
        # carries the flag multiplies by the new weight one cycle later) or B itself (OS: w
        # takes s_in every cycle, like s). No logic and no mode bit between the registers and
        # the partial products (ECP5 Fmax).
        a_r = Signal(signed(8))
        m.d.sync += a_r.eq(self.a_in)
        w = Signal(signed(8))
        if has_ws and has_os:
            m.d.sync += w.eq(Mux(os, self.s_in, Mux(flag, s, w)))
        elif has_ws:
            with m.If(flag):
                m.d.sync += w.eq(s)
        else:
            m.d.sync += w.eq(self.s_in)
        b = w

        # Product, MUL_LATENCY cycles after a_in (operand register + 3 multiplier stages).
        prod = Signal(signed(16))
        if self._multiplier == "dsp":
            stages = [Signal(signed(16), name=f"prod_d{n}") for n in range(MUL_LATENCY - 2)]
            m.d.sync += stages[0].eq(a_r * b)
            for n in range(1, len(stages)):
                m.d.sync += stages[n].eq(stages[n - 1])
            m.d.sync += prod.eq(stages[-1])
        else:
            # Shift-and-add in logic, one adder level per stage:
            # a*b = sum_k b[k]*(a << k) - b[7]*(a << 7) (b two's complement).
            t = [Mux(b[k], a_r, 0) for k in range(8)]
            pairs = [Signal(signed(11), name=f"pp{n}") for n in range(4)]
            m.d.sync += [pairs[0].eq(t[0] + (t[1] << 1)), pairs[1].eq(t[2] + (t[3] << 1)),
                         pairs[2].eq(t[4] + (t[5] << 1)), pairs[3].eq(t[6] - (t[7] << 1))]
            quads = [Signal(signed(14), name=f"pq{n}") for n in range(2)]
            m.d.sync += [quads[0].eq(pairs[0] + (pairs[1] << 2)),
                         quads[1].eq(pairs[2] + (pairs[3] << 2))]
            m.d.sync += prod.eq(quads[0] + (quads[1] << 4))

        if has_os:
            acc = Signal(signed(32))
            # the last-step flag follows its product through the multiplier pipeline
            lastp = [Signal(name=f"last{n}") for n in range(MUL_LATENCY)]
            m.d.sync += lastp[0].eq(flag & os)
            for n in range(1, MUL_LATENCY):
                m.d.sync += lastp[n].eq(lastp[n - 1])
            last = lastp[-1]                   # the last product is at the adder this cycle
            done = Signal()                    # acc holds a finished sum this cycle
            m.d.sync += done.eq(last)
            # Summand without the mode bit: acc is zero in WS and d (the WS chain) is zero in
            # OS (both by synchronous reset, no logic after the adder), so an OR selects; a
            # finished sum is not carried into the next tile.
            summand = Signal(signed(32))
            m.d.comb += summand.eq(Mux(done, 0, acc) | (self.d_in if has_ws else 0))
            total = Signal(signed(32))
            m.d.comb += total.eq(summand + prod)
            if has_ws:
                m.d.sync += self.d_out.eq(Mux(os, 0, total))
            m.d.sync += acc.eq(Mux(os, total, 0))
            with m.If(done):
                m.d.sync += self.q_out.eq(acc)
            with m.Elif(self.drain):
                m.d.sync += self.q_out.eq(self.q_in)
        else:
            m.d.sync += self.d_out.eq(self.d_in + prod)
        return m
