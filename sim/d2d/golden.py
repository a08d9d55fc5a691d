"""Golden models of the D2D link, written from the spec text (../shared/reference/d2d.md).

These are independent of the RTL: a bit-serial CRC straight from the polynomial, a flit packer /
unpacker driven by the byte maps below, and a Go-Back-N scoreboard. The RTL (hdl/d2d/) follows the
byte maps defined here; they are the single source of truth for both D2D engineers.

CRC-16 (d2d.md §1.4, [V] S1 p.73)
=================================
- Generator G(x) = x^16 + x^15 + x^2 + 1 = (x+1)(x^15+x+1), i.e. 0x8005.
- Always computed over a 128-byte window. A shorter message is zero-extended on the MSB side
  (its missing high-index bytes count as 0). Reserved bits count as 0.
- Initial value 0000h, no final XOR, no reflection of the register (we do *not* assume CRC-16/ARC;
  d2d.md says not to).
- Bit order: processing starts at bit 0 of byte 0 and runs bit 0 -> 7 within each byte, then byte 1,
  ... byte 127 (bit 1023 of the spec's 1024-bit input = byte 127 bit 7 is processed last).
- Our reading as polynomial arithmetic: the first processed bit is the highest-degree message
  coefficient; ``crc = M(x) * x^16 mod G(x)``; C[i] is the coefficient of x^i.
- Output mapping: CRC byte 0 = C[7:0] (C[7] is its bit 7), CRC byte 1 = C[15:8] (C[15] is its
  bit 7), so on the link the CRC is little-endian. CRC byte 0 is at the lower flit address.
- Cross-check: ``crc16(b"123456789") == 0xBCDD``, the bit-reversal of the published CRC-16/ARC check
  value 0xBB3D (same polynomial and input bit order; ARC also reflects its output, we do not).
  Until a spec example is available this is our documented reading, not a verified spec vector.

Flit byte maps (OURS; the spec's Figures 3-16..3-22 were not retrieved, d2d.md "Open items")
==========================================================================================
Byte ``i`` of a flit is the ``i``-th byte sent. Bit 0 of a byte is its LSB.

Flit header FH, bytes 0-1 of every format except raw::

    byte 0 [7:6] PID   protocol / stream id. 00 = adapter control / NOP flit (d2d.md §1.3: 00 is
                       the D2D-adapter NOP id and Streaming never uses it), 01 = stream 0,
                       10 = stream 1, 11 = stream 2 (reserved: the adapter multiplexes 2 streams)
    byte 0 [5:4] ACK   00 = none, 01 = Ack, 10 = Nak, 11 = reserved
    byte 0 [3:2] CRED  credit return: bit 2 -> +1 credit to stream 0, bit 3 -> +1 to stream 1
    byte 0 [1:0] NUM[9:8] \\ 10-bit number: the flit's sequence number when PID != 00;
    byte 1 [7:0] NUM[7:0] /  the Ack/Nak number when PID == 00 (control flit)

256B formats add a 2-byte DLP after FH (bytes 2-3)::

    byte 2 [7:2] reserved (0)
    byte 2 [1:0] ACKNUM[9:8] \\ Ack/Nak number piggy-backed on a data flit (PID != 00)
    byte 3 [7:0] ACKNUM[7:0] /  whose ACK field is non-zero. Unused on control flits (0).

Header semantics (Go-Back-N, d2d.md §1.5): sequence numbers are 10 bits (PCIe 6.0 Flit Mode, [R])
and start at 0. Only data flits (PID != 00) carry a sequence number, enter the replay buffer and
consume one credit of their stream. Control flits (PID == 00) are neither sequenced nor replayed; a
control flit with ACK == 00 is a NOP. ``Ack n``: all flits up to and including n (mod 1024) were
received good. ``Nak n``: flits up to n were good, flit n+1 failed; the sender replays from n+1.
In the 68B format there is no DLP, so Ack/Nak ride on control flits only (the spec's alternation of
explicit-sequence-number flits and Ack/Nak flits); 256B formats may also piggy-back (ACKNUM).
The ack number of a flit is therefore ``NUM if PID == 0 else ACKNUM`` (see :func:`ack_number`).

===========  ====  ======  ==================  ===============================  ===========
format       size  header  payload bytes       CRC windows (msg bytes -> CRC)   payload frac
===========  ====  ======  ==================  ===============================  ===========
``68``         68   0-1    2..65 (64)          [0,66) -> 66,67                  64/68
``256``       256   0-3    4..251 (248)        [0,128) -> 252,253;              248/256
                                               [128,252) -> 254,255
``256lo``     256   0-3    4..125, 128..253    [0,126) -> 126,127;              248/256
                           (122 + 126 = 248)   [128,254) -> 254,255
``raw``       256   none   0..255 (256)        none (protocol layer owns it)    256/256
===========  ====  ======  ==================  ===============================  ===========

``256`` is the standard format with the header at the start (the CXL-style start-header variant,
Format 4); both of its CRCs sit at the end, so the receiver checks the flit once it is complete.
``256lo`` is latency-optimized (Format 5): each 128-byte half ends with its own CRC, so the first
half can be checked and released before the second arrives. A window's message is zero-extended
to 128 bytes; the CRC bytes themselves are never part of any window. Payload byte ``k`` of a flit
goes to flit byte ``PAYLOAD_INDEX[fmt][k]`` (numpy array).
"""

from dataclasses import dataclass

import numpy as np

from ...hdl.common.params import ConfigError, check_choice, check_int

__all__ = [
    "CRC_POLY", "CRC_WINDOW_BYTES", "crc16_bits", "crc16", "crc16_window", "crc_to_bytes",
    "FORMATS", "FlitFormat", "flit_format", "PID_CONTROL", "PID_STREAM0", "PID_STREAM1",
    "ACK_NONE", "ACK_ACK", "ACK_NAK", "SEQ_BITS", "SEQ_MOD", "HEADER_FIELDS", "DLP_FIELDS",
    "pack_header", "unpack_header", "pack_flit", "unpack_flit", "ack_number",
    "payload_fraction", "GoBackNScoreboard", "ScoreboardError", "plan_repair",
]

# d2d.md §1.4: x^16 + x^15 + x^2 + 1; 0x8005 holds the coefficients of x^15..x^0.
CRC_POLY = 0x8005
CRC_WIDTH = 16
CRC_WINDOW_BYTES = 128


def crc16_bits(bits, crc=0):
    """Bit-serial CRC-16 over an iterable of bits (0/1), processed in the given order.

    ``crc`` is the register before the first bit (0 per d2d.md §1.4). Each step computes
    ``S <- (S*x + b*x^16) mod G``: the register's x^15 coefficient and the incoming bit are
    fed back through x^16 = x^15 + x^2 + 1.
    """
    for b in bits:
        feedback = ((crc >> 15) & 1) ^ (int(b) & 1)
        crc = (crc << 1) & 0xFFFF
        if feedback:
            crc ^= CRC_POLY
    return crc


def _bits_lsb_first(data):
    for byte in bytes(data):
        for j in range(8):
            yield (byte >> j) & 1


def crc16(data):
    """CRC-16 of ``data`` (bytes) without zero extension: bit 0 of byte 0 first, init 0."""
    return crc16_bits(_bits_lsb_first(data))


def crc16_window(data, window=CRC_WINDOW_BYTES):
    """CRC-16 of one 128-byte window: ``data`` (<= 128 bytes) zero-extended on the MSB side."""
    data = bytes(data)
    if len(data) > window:
        raise ValueError(f"CRC window holds at most {window} bytes, not {len(data)}")
    return crc16(data + bytes(window - len(data)))


def crc_to_bytes(crc):
    """The two CRC bytes as sent: byte 0 = C[7:0], byte 1 = C[15:8] (d2d.md §1.4 output mapping)."""
    return bytes((crc & 0xFF, (crc >> 8) & 0xFF))


# ---------------------------------------------------------------------------------------------
# Flit formats
# ---------------------------------------------------------------------------------------------

PID_CONTROL, PID_STREAM0, PID_STREAM1, PID_STREAM2 = 0, 1, 2, 3
ACK_NONE, ACK_ACK, ACK_NAK = 0, 1, 2
SEQ_BITS = 10            # [R] PCIe 6.0 Flit Mode sequence numbers (d2d.md §1.5)
SEQ_MOD = 1 << SEQ_BITS

# name -> list of (byte, msb, lsb) slices, most significant slice first.
HEADER_FIELDS = {
    "pid": [(0, 7, 6)],
    "ack": [(0, 5, 4)],
    "cred": [(0, 3, 2)],
    "num": [(0, 1, 0), (1, 7, 0)],
}
DLP_FIELDS = {
    "acknum": [(2, 1, 0), (3, 7, 0)],
}


@dataclass(frozen=True)
class FlitFormat:
    """One flit format's byte map.

    Attributes
    ----------
    name : str
    size : int
        Flit length in bytes.
    header_bytes : int
        Adapter header bytes at the start (FH, plus DLP for 256B formats).
    payload_index : tuple of int
        Flit byte offset of each payload byte, in payload order.
    windows : tuple of (lo, hi, crc_pos)
        CRC windows: message = flit bytes [lo, hi) zero-extended to 128, CRC at crc_pos, crc_pos+1.
    """

    name: str
    size: int
    header_bytes: int
    payload_index: tuple
    windows: tuple

    @property
    def payload_bytes(self):
        return len(self.payload_index)

    @property
    def fields(self):
        if self.header_bytes == 0:
            return {}
        out = dict(HEADER_FIELDS)
        if self.header_bytes >= 4:
            out.update(DLP_FIELDS)
        return out

    @property
    def crc_positions(self):
        return tuple(w[2] for w in self.windows)

    @property
    def payload_fraction(self):
        return self.payload_bytes / self.size


def _fmt(name, size, header, payload_ranges, windows):
    idx = tuple(i for lo, hi in payload_ranges for i in range(lo, hi))
    return FlitFormat(name, size, header, idx, tuple(windows))


FORMATS = {
    "68": _fmt("68", 68, 2, [(2, 66)], [(0, 66, 66)]),
    "256": _fmt("256", 256, 4, [(4, 252)], [(0, 128, 252), (128, 252, 254)]),
    "256lo": _fmt("256lo", 256, 4, [(4, 126), (128, 254)], [(0, 126, 126), (128, 254, 254)]),
    "raw": _fmt("raw", 256, 0, [(0, 256)], []),
}

PAYLOAD_INDEX = {k: np.array(f.payload_index, dtype=np.int64) for k, f in FORMATS.items()}


def flit_format(fmt):
    """The :class:`FlitFormat` named ``fmt`` ("68", "256", "256lo", "raw"; ints 68/256 accepted)."""
    if isinstance(fmt, FlitFormat):
        return fmt
    return FORMATS[check_choice("flit", str(fmt), tuple(FORMATS))]


def payload_fraction(fmt):
    """Theoretical payload fraction of a format: payload bytes / flit bytes."""
    return flit_format(fmt).payload_fraction


def _field_width(slices):
    return sum(msb - lsb + 1 for _, msb, lsb in slices)


def pack_header(fmt, **fields):
    """Header bytes (length ``header_bytes``) from field values; unknown/oversized fields raise."""
    f = flit_format(fmt)
    out = bytearray(f.header_bytes)
    for name, value in fields.items():
        if name not in f.fields:
            raise ConfigError(name, f"is not a header field of flit format {f.name}")
        slices = f.fields[name]
        width = _field_width(slices)
        check_int(name, value, lo=0, hi=(1 << width) - 1)
        shift = width
        for byte, msb, lsb in slices:
            w = msb - lsb + 1
            shift -= w
            part = (value >> shift) & ((1 << w) - 1)
            out[byte] |= part << lsb
    return bytes(out)


def unpack_header(fmt, flit):
    """Dict of header field values read from ``flit`` (bytes of at least ``header_bytes``)."""
    f = flit_format(fmt)
    out = {}
    for name, slices in f.fields.items():
        v = 0
        for byte, msb, lsb in slices:
            w = msb - lsb + 1
            v = (v << w) | ((flit[byte] >> lsb) & ((1 << w) - 1))
        out[name] = v
    return out


def ack_number(header):
    """The Ack/Nak number a header carries: NUM on control flits, ACKNUM on 256B data flits."""
    if header.get("pid", 0) == PID_CONTROL:
        return header["num"]
    return header.get("acknum", 0)


def pack_flit(fmt, payload, **fields):
    """A complete flit (bytes): header fields, payload (exactly ``payload_bytes``), CRCs."""
    f = flit_format(fmt)
    payload = bytes(payload)
    if len(payload) != f.payload_bytes:
        raise ValueError(f"flit format {f.name} carries {f.payload_bytes} payload bytes, not {len(payload)}")
    flit = np.zeros(f.size, dtype=np.uint8)
    if f.header_bytes:
        flit[:f.header_bytes] = np.frombuffer(pack_header(f, **fields), dtype=np.uint8)
    elif fields:
        raise ConfigError(next(iter(fields)), "raw flits have no header")
    flit[PAYLOAD_INDEX[f.name]] = np.frombuffer(payload, dtype=np.uint8)
    for lo, hi, pos in f.windows:
        flit[pos:pos + 2] = np.frombuffer(crc_to_bytes(crc16_window(flit[lo:hi].tobytes())), dtype=np.uint8)
    return flit.tobytes()


def unpack_flit(fmt, flit):
    """``(header, payload, crc_ok)`` of a received flit; ``crc_ok`` is a tuple, one per window."""
    f = flit_format(fmt)
    flit = bytes(flit)
    if len(flit) != f.size:
        raise ValueError(f"flit format {f.name} is {f.size} bytes, not {len(flit)}")
    arr = np.frombuffer(flit, dtype=np.uint8)
    ok = tuple(crc_to_bytes(crc16_window(flit[lo:hi])) == flit[pos:pos + 2] for lo, hi, pos in f.windows)
    payload = arr[PAYLOAD_INDEX[f.name]].tobytes()
    return unpack_header(f, flit), payload, ok


# ---------------------------------------------------------------------------------------------
# Go-Back-N scoreboard
# ---------------------------------------------------------------------------------------------

class ScoreboardError(AssertionError):
    """The receiver's output differs from what was sent (loss, duplicate, reorder or corruption)."""


class GoBackNScoreboard:
    """Checks that a link delivered every item exactly once, in order, unmodified.

    Per stream, ``sent(stream, item)`` records what the transmitter accepted and
    ``received(stream, item)`` what the receiver released. Items are any hashable values (flit
    payloads as bytes, or tagged records). A mismatch raises :class:`ScoreboardError` naming the
    kind of fault: *duplicate* (an item already delivered), *reorder* (an item sent later than the
    expected one), *loss* (at :meth:`finish`, items never delivered) or *corrupt* (never sent).
    """

    def __init__(self, seed=None):
        self.seed = seed
        self._sent = {}
        self._next = {}
        self._delivered = {}

    def sent(self, stream, item):
        self._sent.setdefault(stream, []).append(item)
        self._next.setdefault(stream, 0)

    def received(self, stream, item):
        queue = self._sent.get(stream, [])
        i = self._next.get(stream, 0)
        where = f"stream {stream}, item {i}" + (f" (seed {self.seed})" if self.seed is not None else "")
        if i < len(queue) and queue[i] == item:
            self._next[stream] = i + 1
            self._delivered[stream] = self._delivered.get(stream, 0) + 1
            return
        if item in queue[:i]:
            raise ScoreboardError(f"duplicate at {where}: item {queue[:i].index(item)} delivered again")
        if item in queue[i + 1:]:
            raise ScoreboardError(f"reorder/loss at {where}: got item {queue.index(item, i + 1)} instead")
        raise ScoreboardError(f"corrupt at {where}: received an item that was never sent")

    def delivered(self, stream):
        return self._delivered.get(stream, 0)

    def finish(self):
        """Raise if any sent item was never delivered; return total delivered."""
        for stream, queue in self._sent.items():
            if self._next[stream] != len(queue):
                raise ScoreboardError(f"loss on stream {stream}: {len(queue) - self._next[stream]} of "
                                      f"{len(queue)} items never delivered"
                                      + (f" (seed {self.seed})" if self.seed is not None else ""))
        return sum(self._delivered.values())


# ---------------------------------------------------------------------------------------------
# Lane repair plan (training, MBINIT.REPAIRMB)
# ---------------------------------------------------------------------------------------------

def plan_repair(pass_mask, lanes, spares_per_group, allow_degrade=True):
    """Repair decision from a per-slot pass mask, as hdl/d2d/training.py must make it.

    ``pass_mask[k]`` is True when slot k (data slots 0..lanes-1, then the spares, group g's spare
    s at ``lanes + g * spares_per_group + s``) passed the lane-ID test. Groups have
    ``min(lanes, 32)`` lanes (d2d.md §1.7). Broken data lanes are taken in increasing order and each
    gets the first working, unused spare of its group. If every broken lane gets a spare the link
    runs at full width (``width`` 0); otherwise, when ``allow_degrade``, the same procedure is tried
    for the lower half of the data lanes alone (``width`` 1), then the upper half (``width`` 2).

    Returns ``(width, entries)`` with ``entries[k] = (en, lane_in_group)`` per spare, or ``None``
    when the link cannot be repaired (TRAINERROR).
    """
    group = min(lanes, 32)
    spares = (lanes // group) * spares_per_group

    def walk(lo, hi):
        entries = [(0, 0)] * spares
        used = [False] * spares
        for lane in range(lo, hi):
            if pass_mask[lane]:
                continue
            g, idx = divmod(lane, group)
            for s in range(spares_per_group):
                k = g * spares_per_group + s
                if pass_mask[lanes + k] and not used[k]:
                    used[k] = True
                    entries[k] = (1, idx)
                    break
            else:
                return None
        return entries

    tries = [(0, 0, lanes)]
    if allow_degrade:
        tries += [(1, 0, lanes // 2), (2, lanes // 2, lanes)]
    for width, lo, hi in tries:
        entries = walk(lo, hi)
        if entries is not None:
            return width, entries
    return None
