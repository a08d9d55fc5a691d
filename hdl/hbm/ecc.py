"""SECDED (72, 64) extended Hamming code in RTL: single-error correction, double-error detection
per 64 data bits (textbook construction, Hamming 1950 plus an overall parity bit).

Codeword layout, identical bit for bit to the golden model ``sim/hbm/ecc.py``: a 72-bit word is
``data64 | check8 << 64``. In Hamming positions 1..71, the powers of two (1, 2, 4, ..., 64) hold
check bits c0..c6 and the other 64 positions hold data bits 0..63 in ascending order (data bit 0 at
position 3). ``c_j`` is the XOR of the data bits whose position has bit j set; ``c7`` (bit 71 of
the word) is the overall parity, making every codeword even.

Decoding: syndrome ``s`` = recomputed c0..c6 XOR received c0..c6, ``p`` = parity of all 72 bits.
``p == 1``: one bit flipped, at Hamming position ``s`` (0 = c7): corrected (``s`` > 71 cannot
be a single error: uncorrectable). ``p == 0, s != 0``: two bits flipped: uncorrectable, data passed
through as received. Combinational, no latency.
"""

from amaranth.hdl import Cat, Const, Mux, Signal

__all__ = ["DATA_POSITIONS", "CHECK_POSITIONS", "encode", "decode"]

CHECK_POSITIONS = tuple(1 << k for k in range(7))
DATA_POSITIONS = tuple(p for p in range(1, 72) if p & (p - 1))
assert len(DATA_POSITIONS) == 64


def encode(m, data, name="ecc_enc"):
    """72-bit codeword ``data | check << 64`` (a Signal) for a 64-bit ``data`` Value."""
    checks = []
    for cp in CHECK_POSITIONS:
        checks.append(Cat(*[data[i] for i, p in enumerate(DATA_POSITIONS) if p & cp]).xor())
    c7 = Signal(7, name=f"{name}_c")
    m.d.comb += c7.eq(Cat(*checks))
    word = Signal(72, name=name)
    m.d.comb += word.eq(Cat(data, c7, Cat(data, c7).xor()))
    return word


def decode(m, word, name="ecc_dec"):
    """``(data64, corrected, uncorrectable)`` Signals for a 72-bit ``word`` Value."""
    data_in = word[:64]
    syn = Signal(7, name=f"{name}_syn")
    for k, cp in enumerate(CHECK_POSITIONS):
        m.d.comb += syn[k].eq(
            Cat(*[data_in[i] for i, p in enumerate(DATA_POSITIONS) if p & cp]).xor() ^ word[64 + k])
    parity = Signal(name=f"{name}_par")
    m.d.comb += parity.eq(word.xor())
    data = Signal(64, name=f"{name}_data")
    single = parity & (syn <= 71)
    m.d.comb += data.eq(Cat(*[data_in[i] ^ (single & (syn == p))
                              for i, p in enumerate(DATA_POSITIONS)]))
    corrected = Signal(name=f"{name}_corr")
    uncorrectable = Signal(name=f"{name}_unc")
    m.d.comb += [corrected.eq(single),
                 uncorrectable.eq((~parity & (syn != 0)) | (parity & (syn > 71)))]
    return data, corrected, uncorrectable
