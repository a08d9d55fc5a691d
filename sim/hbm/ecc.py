"""Golden SECDED (72,64) model: extended Hamming code, written from the textbook construction.

Construction (Hamming 1950, extended with an overall parity bit):

- Number the positions of a Hamming(71,64) codeword 1..71. The 7 positions that are powers of two
  (1, 2, 4, ..., 64) hold check bits c0..c6; the other 64 positions hold the data bits in order:
  data bit i sits at the i-th position (ascending) that is not a power of two, so data bit 0 is at
  position 3, bit 1 at 5, bit 2 at 6, bit 3 at 7, bit 4 at 9, ..., bit 63 at 71.
- Check bit ``c_j`` (j = 0..6) is the XOR of the data bits whose position has bit j set. The
  syndrome of a received word is therefore the position of a single flipped bit.
- ``c7`` is the overall parity: the XOR of all 64 data bits and c0..c6, so every codeword has even
  weight. Single errors flip it, double errors do not.

Decoding (syndrome ``s`` = recomputed c0..c6 XOR received c0..c6, ``p`` = parity of all 72 bits):

- ``s == 0, p == 0``: no error (``ok``).
- ``p == 1``: one bit flipped. ``s == 0``: it was c7. ``s`` a power of two: it was check bit
  ``log2 s``. ``s`` a data position: flip that data bit back. All ``corrected``. ``s`` > 71 (no such
  position) cannot come from one error: ``uncorrectable``.
- ``p == 0, s != 0``: two bits flipped: ``uncorrectable`` (data returned as received).

Layout on the DFI bus and in the device (hdl/hbm/controller.py docstring): a 72-bit codeword is
``data64 | check8 << 64``; a burst of ``n`` words puts word ``k`` at bits ``72k .. 72k+71``.
The RTL in hdl/hbm/ecc.py must agree with :func:`encode` / :func:`decode` bit for bit.
"""

__all__ = ["OK", "CORRECTED", "UNCORRECTABLE", "DATA_POSITIONS", "encode", "decode",
           "encode_word", "decode_word", "encode_burst", "decode_burst", "flip"]

OK = "ok"
CORRECTED = "corrected"
UNCORRECTABLE = "uncorrectable"

_MASK64 = (1 << 64) - 1
#: Hamming position (1..71) of each data bit.
DATA_POSITIONS = tuple(p for p in range(1, 72) if p & (p - 1))
assert len(DATA_POSITIONS) == 64
_POS_TO_DATA = {p: i for i, p in enumerate(DATA_POSITIONS)}
#: Data-bit mask feeding each check bit c0..c6.
CHECK_MASKS = tuple(sum(1 << i for i, p in enumerate(DATA_POSITIONS) if p >> j & 1) for j in range(7))


def _parity(x):
    return x.bit_count() & 1


def _hamming7(data):
    c = 0
    for j, m in enumerate(CHECK_MASKS):
        c |= _parity(data & m) << j
    return c


def encode(data64):
    """Check byte (c0..c6 in bits 0..6, overall parity c7 in bit 7) of a 64-bit data word."""
    data64 = int(data64)
    if not 0 <= data64 <= _MASK64:
        raise ValueError(f"data must be a 64-bit unsigned integer, not {data64:#x}")
    c = _hamming7(data64)
    return c | (_parity(data64) ^ _parity(c)) << 7


def decode(data64, check8):
    """Decode a received word. Returns ``(data64, status)`` with status ok / corrected / uncorrectable."""
    data64 = int(data64) & _MASK64
    check8 = int(check8) & 0xFF
    s = _hamming7(data64) ^ (check8 & 0x7F)
    p = _parity(data64) ^ _parity(check8)
    if p == 0:
        return (data64, OK) if s == 0 else (data64, UNCORRECTABLE)
    if s == 0 or not s & (s - 1):
        return data64, CORRECTED            # c7 or a check bit c0..c6
    i = _POS_TO_DATA.get(s)
    if i is None:
        return data64, UNCORRECTABLE        # syndrome names no position: three or more errors
    return data64 ^ (1 << i), CORRECTED


def encode_word(data64):
    """72-bit codeword ``data64 | check8 << 64``."""
    return int(data64) | encode(data64) << 64


def decode_word(word72):
    return decode(word72 & _MASK64, word72 >> 64)


def encode_burst(data, words):
    """Encode ``words`` 64-bit words (little-endian in ``data``) into ``words`` 72-bit codewords."""
    out = 0
    for k in range(words):
        out |= encode_word((data >> (64 * k)) & _MASK64) << (72 * k)
    return out


def decode_burst(coded, words):
    """Decode ``words`` codewords. Returns ``(data, corrected, uncorrectable)`` (counts of words)."""
    data = corrected = uncorrectable = 0
    for k in range(words):
        d, status = decode_word((coded >> (72 * k)) & ((1 << 72) - 1))
        data |= d << (64 * k)
        corrected += status == CORRECTED
        uncorrectable += status == UNCORRECTABLE
    return data, corrected, uncorrectable


def flip(value, bits):
    """Error injection: ``value`` with the given bit positions inverted."""
    for b in bits:
        value ^= 1 << b
    return value
