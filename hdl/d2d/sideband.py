"""Sideband message channel of the D2D PHY: a serial link per direction and a small message set.

UCIe's sideband is a separate serial data + clock pair per direction at 800 MT/s (d2d.md §1.7)
carrying training messages. Ours keeps the idea and is deliberately small:

Serial frame (one bit per clock on two wires: data and clock)
------------------------------------------------------------
The line is 2 bits: ``line[0]`` is the data wire, ``line[1]`` says the forwarded sideband clock is
running. As in UCIe, the clock runs only while a packet is sent and pauses between packets, so
the receiver frames packets by the clock and never loses packet alignment. A frame is
48 bits with the clock running, the 32 message bits (bit 0 first) then 16 check bits (C[0]
first), followed by at least :data:`GAP_CLOCKS` clocks with the clock stopped: a frame takes
:data:`FRAME_CLOCKS` = 52 clocks. The check is the link's CRC-16 (x^16+x^15+x^2+1, init 0,
d2d.md §1.4) of the 32 message bits in the order sent. The channel model corrupts only the data
wire (the clock wire is modelled as reliable, like the main band's Valid lane). The receiver
drops a frame that fails the check or does not have 48 bits (counted in ``check_errors``); the
training handshake resends, so a lost message only costs time.

Message (32 bits, :data:`MESSAGE`)
---------------------------------
``opcode`` [3:0], ``ack`` [4] (the sender has seen the partner's message with this opcode),
``data`` [31:5] (27 bits). Message set (:class:`Op`):

==================  ==========================================================================
``SBINIT_DONE``     sideband works (d2d.md §1.7 "{SBINIT done req/resp}"); data 0
``PARAM``           MBINIT.PARAM exchange: data[1:0] lanes (0: x16, 1: x32, 2: x64),
                    [4:2] spares per group, [5] scrambler on, [6] width degrade allowed; both
                    sides must send the same value, else TRAINERROR
``REVERSAL``        MBINIT.REVERSALMB result: data[0] = the sender's RX saw the per-lane IDs
                    reversed; the receiver of this message then reverses its TX (TX-side reversal)
``REPAIR``          MBINIT.REPAIRMB "apply repair": data[1:0] width (0 full, 1 lower half,
                    2 upper half), [2] unrepairable, [3+6k+5:3+6k] spare k = {lane[4:0], en}
                    (en in the low bit); the receiver applies it to its TX
``MBTRAIN``         main-band data test result: data[0] = all test beats received correctly
``LINKINIT_DONE``   link initialised
``RETRAIN``         retrain request / acknowledgement (from ACTIVE)
``TRAINERROR``      the sender gave up; the receiver goes to TRAINERROR too
==================  ==========================================================================
"""

import enum

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .crc import WIDTH as CHECK_BITS, crc_matrix_columns, gf2_matvec

__all__ = ["Op", "MESSAGE", "FRAME_CLOCKS", "FRAME_BITS", "GAP_CLOCKS", "SidebandTx", "SidebandRx", "frame_bits", "parse_frames"]


class Op(enum.IntEnum):
    NOP = 0
    SBINIT_DONE = 1
    PARAM = 2
    REVERSAL = 3
    REPAIR = 4
    MBTRAIN = 5
    LINKINIT_DONE = 6
    RETRAIN = 7
    TRAINERROR = 8


MESSAGE = data.StructLayout({"opcode": 4, "ack": 1, "data": 27})
MESSAGE_BITS = 32
FRAME_BITS = MESSAGE_BITS + CHECK_BITS
GAP_CLOCKS = 4
FRAME_CLOCKS = FRAME_BITS + GAP_CLOCKS


def _check(bits):
    # bit-serial CRC-16 of the golden model (init 0, bits in the order sent)
    from ...sim.d2d.golden import crc16_bits
    return crc16_bits(bits)


def frame_bits(value):
    """Python model: the (data, clock) line values of one frame (and its gap) for a message."""
    bits = [(value >> i) & 1 for i in range(MESSAGE_BITS)]
    c = _check(bits)
    bits += [(c >> i) & 1 for i in range(CHECK_BITS)]
    return [b | 2 for b in bits] + [0] * GAP_CLOCKS


def parse_frames(line):
    """Python model: messages decoded from (data | clock << 1) line values; bad frames dropped."""
    out, run = [], []
    for v in list(line) + [0]:
        if v & 2:
            run.append(v & 1)
            continue
        if run:
            body, check = run[:MESSAGE_BITS], run[MESSAGE_BITS:]
            if len(run) == FRAME_BITS and _check(body) == sum(b << k for k, b in enumerate(check)):
                out.append(sum(b << k for k, b in enumerate(body)))
            run = []
    return out


def _message_check(bits):
    """Combinational CRC-16 of a 32-bit message (bit 0 sent first), as an Amaranth value."""
    _, data_cols = crc_matrix_columns(MESSAGE_BITS)
    return gf2_matvec([bits[p] for p in range(MESSAGE_BITS)], data_cols)


class SidebandTx(wiring.Component):
    """Serialises messages onto the sideband (data wire + clock-running wire).

    Members
    -------
    msg : In(MESSAGE), valid : In(1), ready : Out(1)
        A message is taken when ``valid & ready``; ``ready`` is high while the line is free.
    line : Out(2)
        ``line[0]`` data, ``line[1]`` clock running (registered).

    Latency: the first bit appears 1 clock after the message is taken; the next message can be
    taken :data:`FRAME_CLOCKS` clocks after the previous one.
    """

    msg: In(MESSAGE)
    valid: In(1)
    ready: Out(1)
    line: Out(2)

    def elaborate(self, platform):
        m = Module()
        shift = Signal(FRAME_BITS)                 # message + check, shifted out LSB first
        count = Signal(range(FRAME_CLOCKS + 1))    # clocks left in the frame and its gap
        m.d.comb += self.ready.eq(count == 0)
        with m.If(self.ready & self.valid):
            bits = self.msg.as_value()
            frame = Cat(bits, _message_check(bits))
            m.d.sync += [
                self.line.eq(Cat(frame[0], 1)),
                shift.eq(frame >> 1),
                count.eq(FRAME_CLOCKS - 1),
            ]
        with m.Elif(count != 0):
            m.d.sync += [
                self.line.eq(Cat(shift[0], count > GAP_CLOCKS)),
                shift.eq(shift >> 1),
                count.eq(count - 1),
            ]
        with m.Else():
            m.d.sync += self.line.eq(0)
        return m


class SidebandRx(wiring.Component):
    """Deserialises the sideband into messages, framing them by the clock-running wire.

    Members
    -------
    line : In(2)
    msg : Out(MESSAGE), valid : Out(1)
        ``valid`` strobes for one clock per good frame; ``msg`` holds until the next frame.
    check_errors : Out(16)
        Frames dropped (check failed or wrong length; saturating).

    Latency: ``valid`` rises 1 clock after the first clock-stopped cycle following a frame.
    """

    line: In(2)
    msg: Out(MESSAGE)
    valid: Out(1)
    check_errors: Out(16)

    def elaborate(self, platform):
        m = Module()
        shift = Signal(FRAME_BITS)
        count = Signal(range(FRAME_BITS + 2))
        m.d.sync += self.valid.eq(0)
        with m.If(self.line[1]):
            m.d.sync += [shift.eq(Cat(shift[1:], self.line[0])),
                         count.eq(Mux(count == FRAME_BITS + 1, count, count + 1))]
        with m.Elif(count != 0):
            m.d.sync += count.eq(0)
            body = shift[:MESSAGE_BITS]
            with m.If((count == FRAME_BITS) & (_message_check(body) == shift[MESSAGE_BITS:])):
                m.d.sync += [self.msg.eq(body), self.valid.eq(1)]
            with m.Elif(self.check_errors != 0xFFFF):
                m.d.sync += self.check_errors.eq(self.check_errors + 1)
        return m
