"""SECDED (72, 64) Hamming code in RTL: single-error correction, double-error detection per 64 data
bits (extended Hamming code, textbook construction).

Codeword layout (72 bits, bit ``p`` of the word = Hamming position ``p``):

- position 0: overall parity (even parity over all 72 bits);
- positions 1, 2, 4, 8, 16, 32, 64: check bit ``k`` at position ``2**k`` makes the XOR of every
  position whose index has bit ``k`` set equal to zero;
- the other 64 positions (3, 5, 6, 7, 9, ...) carry data bits 0..63 in increasing order.

Decoding: the syndrome is the XOR of the indices of all set bits (positions 1..71); with the
overall parity it classifies the word: syndrome 0 and parity even: clean; parity odd: one bit
flipped at position ``syndrome`` (0 = the overall parity bit itself), corrected; syndrome != 0 and
parity even: two bits flipped, uncorrectable. Combinational, no latency.
"""

from amaranth.hdl import Cat, Const, Mux, Signal

__all__ = ["DATA_POSITIONS", "CHECK_POSITIONS", "encode", "decode"]

CHECK_POSITIONS = tuple(1 << k for k in range(7))
DATA_POSITIONS = tuple(p for p in range(1, 72) if p & (p - 1))
assert len(DATA_POSITIONS) == 64


def encode(m, data, name="ecc_enc"):
    """72-bit codeword (a Signal) for a 64-bit ``data`` Value."""
    bits = [None] * 72
    for i, p in enumerate(DATA_POSITIONS):
        bits[p] = data[i]
    for k, cp in enumerate(CHECK_POSITIONS):
        acc = Const(0, 1)
        for i, p in enumerate(DATA_POSITIONS):
            if p & cp:
                acc = acc ^ data[i]
        bits[cp] = acc
    body = Signal(71, name=f"{name}_body")
    m.d.comb += body.eq(Cat(*bits[1:]))
    word = Signal(72, name=name)
    m.d.comb += word.eq(Cat(body.xor(), body))
    return word


def decode(m, word, name="ecc_dec"):
    """``(data64, corrected, uncorrectable)`` Signals for a 72-bit ``word`` Value."""
    syn = Signal(7, name=f"{name}_syn")
    for k, cp in enumerate(CHECK_POSITIONS):
        m.d.comb += syn[k].eq(Cat(*[word[p] for p in range(1, 72) if p & cp]).xor())
    parity = Signal(name=f"{name}_par")
    m.d.comb += parity.eq(word.xor())
    fixed = Signal(72, name=f"{name}_fixed")
    m.d.comb += fixed.eq(Mux(parity, word ^ (Const(1, 72) << syn), word))
    data = Signal(64, name=f"{name}_data")
    m.d.comb += data.eq(Cat(*[fixed[p] for p in DATA_POSITIONS]))
    corrected = Signal(name=f"{name}_corr")
    uncorrectable = Signal(name=f"{name}_unc")
    # syndrome beyond 71 with odd parity cannot be a single flip either
    m.d.comb += [corrected.eq(parity & (syn <= 71)),
                 uncorrectable.eq((~parity & (syn != 0)) | (parity & (syn > 71)))]
    return data, corrected, uncorrectable
