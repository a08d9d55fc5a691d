"""Sideband message channel of the D2D PHY: a serial line per direction and a small message set.

UCIe's sideband is a separate serial data + clock pair per direction at 800 MT/s (d2d.md §1.7)
carrying training messages. Ours keeps the idea and is deliberately small:

Serial frame (one bit per clock, idle line = 0)
-----------------------------------------------
``1`` (start) | 32 message bits, bit 0 first | parity (XOR of the 32 bits) | ``0`` ``0`` (gap).
A frame takes :data:`FRAME_CLOCKS` = 36 clocks. The receiver drops a frame whose parity is wrong
(counted in ``parity_errors``); the training handshake resends, so a lost message only costs time.

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

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Op", "MESSAGE", "FRAME_CLOCKS", "SidebandTx", "SidebandRx", "frame_bits", "parse_frames"]


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
FRAME_CLOCKS = 1 + MESSAGE_BITS + 1 + 2


def frame_bits(value):
    """Python model: the serial bits of one frame for a 32-bit message value."""
    bits = [(value >> i) & 1 for i in range(MESSAGE_BITS)]
    return [1] + bits + [sum(bits) & 1, 0, 0]


def parse_frames(bits):
    """Python model: messages (ints) decoded from a bit sequence; bad-parity frames are dropped."""
    out, i = [], 0
    while i < len(bits):
        if bits[i] == 1 and i + 1 + MESSAGE_BITS < len(bits):
            body = bits[i + 1:i + 1 + MESSAGE_BITS]
            if (sum(body) & 1) == bits[i + 1 + MESSAGE_BITS]:
                out.append(sum(b << k for k, b in enumerate(body)))
            i += 2 + MESSAGE_BITS
        else:
            i += 1
    return out


class SidebandTx(wiring.Component):
    """Serialises messages onto the sideband line.

    Members
    -------
    msg : In(MESSAGE), valid : In(1), ready : Out(1)
        A message is taken when ``valid & ready``; ``ready`` is high while the line is free.
    line : Out(1)
        The serial line (registered).

    Latency: the start bit appears 1 clock after the message is taken; the next message can be
    taken :data:`FRAME_CLOCKS` clocks later.
    """

    msg: In(MESSAGE)
    valid: In(1)
    ready: Out(1)
    line: Out(1)

    def elaborate(self, platform):
        m = Module()
        shift = Signal(MESSAGE_BITS + 1)          # message + parity, shifted out LSB first
        count = Signal(range(FRAME_CLOCKS + 1))
        m.d.comb += self.ready.eq(count == 0)
        with m.If(self.ready):
            with m.If(self.valid):
                bits = self.msg.as_value()
                m.d.sync += [
                    shift.eq(Cat(bits, bits.xor())),
                    self.line.eq(1),
                    count.eq(FRAME_CLOCKS - 1),
                ]
            with m.Else():
                m.d.sync += self.line.eq(0)
        with m.Else():
            m.d.sync += [
                self.line.eq(shift[0]),
                shift.eq(shift >> 1),
                count.eq(count - 1),
            ]
        return m


class SidebandRx(wiring.Component):
    """Deserialises the sideband line into messages.

    Members
    -------
    line : In(1)
    msg : Out(MESSAGE), valid : Out(1)
        ``valid`` strobes for one clock per good frame; ``msg`` holds until the next frame.
    parity_errors : Out(16)
        Frames dropped for bad parity (saturating).

    Latency: ``valid`` rises 1 clock after the parity bit is on ``line``.
    """

    line: In(1)
    msg: Out(MESSAGE)
    valid: Out(1)
    parity_errors: Out(16)

    def elaborate(self, platform):
        m = Module()
        shift = Signal(MESSAGE_BITS)
        count = Signal(range(MESSAGE_BITS + 2))
        m.d.sync += self.valid.eq(0)
        with m.If(count == 0):
            with m.If(self.line):
                m.d.sync += count.eq(MESSAGE_BITS + 1)
        with m.Elif(count == 1):
            m.d.sync += count.eq(0)
            with m.If(shift.xor() == self.line):
                m.d.sync += [self.msg.eq(shift), self.valid.eq(1)]
            with m.Elif(self.parity_errors != 0xFFFF):
                m.d.sync += self.parity_errors.eq(self.parity_errors + 1)
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], self.line)), count.eq(count - 1)]
        return m
