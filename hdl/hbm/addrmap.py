"""Configurable HBM address map: which host byte-address bits select channel, SID, bank group,
bank, row and column.

The map is data: ``order`` lists ``(field, bits)`` pairs from the least significant end upwards,
right above the ``offset_bits`` that address a byte inside one column access (a burst). A field
may appear several times (e.g. one column bit low so a 64 B request stays in one row, the rest of
the column higher up); its pieces are concatenated LSB first. With ``xor=True`` the bank-group and
bank bits are XORed with the lowest row bits (bank group with row[0:bg_bits], bank with
row[bg_bits:bg_bits+ba_bits]), which spreads row-conflicting strides over banks (hbm.md,
"Priorities for a generator", item 3).

The default order puts the pseudo-channel and bank-group bits low (hbm.md §"What peers
achieve"): ``column[0]`` (64 B request = two 32 B bursts in one row), ``channel``,
``bank_group``, the rest of the column, ``bank``, ``sid``, ``row``.

``decode_int`` is the Python view; :meth:`AddressMap.decode` builds the same decoder as Amaranth
expressions (pure combinational, no latency).
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const

from ..common.params import ConfigError, check_int

__all__ = ["FIELDS", "AddressMap", "default_order"]

FIELDS = ("channel", "sid", "bank_group", "bank", "row", "column")


def _log2(n, field):
    n = check_int(field, n, lo=1)
    if n & (n - 1):
        raise ConfigError(field, f"must be a power of two, not {n}")
    return n.bit_length() - 1


def default_order(*, channel_bits, sid_bits, bg_bits, ba_bits, row_bits, col_bits):
    """The default field order (LSB first): column[0], channel, bank group, column rest, bank,
    SID, row."""
    low = min(1, col_bits)
    order = [("column", low), ("channel", channel_bits), ("bank_group", bg_bits),
             ("column", col_bits - low), ("bank", ba_bits), ("sid", sid_bits), ("row", row_bits)]
    return tuple((f, b) for f, b in order if b > 0)


@dataclass(frozen=True)
class AddressMap:
    """Address map from a host byte address to HBM coordinates.

    Parameters
    ----------
    offset_bits : int
        log2 of the bytes per column access (5 for 32 B bursts); these bits are below the map.
    widths : tuple of (str, int)
        Total bits of every field in :data:`FIELDS` (0 allowed for ``channel`` and ``sid``).
    order : tuple of (str, int)
        ``(field, bits)`` pieces LSB first; per field the pieces must add up to its width.
    xor : bool
        XOR bank-group and bank bits with the lowest row bits.
    """
    offset_bits: int
    widths: tuple
    order: tuple
    xor: bool = False

    def __post_init__(self):
        check_int("offset_bits", self.offset_bits, lo=0, hi=12)
        w = dict(self.widths)
        for f in FIELDS:
            if f not in w:
                raise ConfigError(f"widths.{f}", "missing")
            check_int(f"widths.{f}", w[f], lo=0, hi=32)
        for f in w:
            if f not in FIELDS:
                raise ConfigError("widths", f"unknown field {f!r}; fields are {', '.join(FIELDS)}")
        got = {f: 0 for f in FIELDS}
        for i, piece in enumerate(self.order):
            if not (isinstance(piece, tuple) and len(piece) == 2):
                raise ConfigError(f"order[{i}]", f"must be a (field, bits) pair, not {piece!r}")
            f, b = piece
            if f not in FIELDS:
                raise ConfigError(f"order[{i}]", f"unknown field {f!r}; fields are {', '.join(FIELDS)}")
            check_int(f"order[{i}].bits", b, lo=1, hi=32)
            got[f] += b
        for f in FIELDS:
            if got[f] != w[f]:
                raise ConfigError("order", f"field {f!r} has {got[f]} bits in the order but "
                                           f"its width is {w[f]}")
        if self.xor and w["row"] < w["bank_group"] + w["bank"]:
            raise ConfigError("xor", "needs at least bank_group + bank row bits")

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, *, bytes_per_burst, channels, sids, bank_groups, banks_per_group, rows,
              columns, order=None, xor=False):
        """A map from organisation counts (all powers of two); ``order`` defaults to
        :func:`default_order`."""
        widths = dict(offset=_log2(bytes_per_burst, "bytes_per_burst"),
                      channel=_log2(channels, "channels"), sid=_log2(sids, "sids"),
                      bank_group=_log2(bank_groups, "bank_groups"),
                      bank=_log2(banks_per_group, "banks_per_group"),
                      row=_log2(rows, "rows"), column=_log2(columns, "columns"))
        off = widths.pop("offset")
        if order is None:
            order = default_order(channel_bits=widths["channel"], sid_bits=widths["sid"],
                                  bg_bits=widths["bank_group"], ba_bits=widths["bank"],
                                  row_bits=widths["row"], col_bits=widths["column"])
        return cls(off, tuple(widths.items()), tuple(tuple(p) for p in order), bool(xor))

    # ---- queries -----------------------------------------------------------------------------
    def width(self, field):
        return dict(self.widths)[field]

    @property
    def addr_bits(self):
        """Bits of a byte address covered by the map (offset included)."""
        return self.offset_bits + sum(b for _, b in self.order)

    def decode_int(self, addr):
        """Python decode: ``{field: value}`` plus ``offset``; address bits above the map ignored."""
        out = {f: 0 for f in FIELDS}
        fill = {f: 0 for f in FIELDS}
        out_offset = addr & ((1 << self.offset_bits) - 1)
        pos = self.offset_bits
        for f, b in self.order:
            out[f] |= ((addr >> pos) & ((1 << b) - 1)) << fill[f]
            fill[f] += b
            pos += b
        if self.xor:
            gb, bb = self.width("bank_group"), self.width("bank")
            out["bank_group"] ^= out["row"] & ((1 << gb) - 1)
            out["bank"] ^= (out["row"] >> gb) & ((1 << bb) - 1)
        out["offset"] = out_offset
        return out

    def encode_int(self, *, channel=0, sid=0, bank_group=0, bank=0, row=0, column=0, offset=0):
        """Inverse of :meth:`decode_int`: the byte address of given coordinates."""
        vals = dict(channel=channel, sid=sid, bank_group=bank_group, bank=bank, row=row,
                    column=column)
        if self.xor:
            gb, bb = self.width("bank_group"), self.width("bank")
            vals["bank_group"] ^= row & ((1 << gb) - 1)
            vals["bank"] ^= (row >> gb) & ((1 << bb) - 1)
        addr = offset
        pos = self.offset_bits
        used = {f: 0 for f in FIELDS}
        for f, b in self.order:
            addr |= ((vals[f] >> used[f]) & ((1 << b) - 1)) << pos
            used[f] += b
            pos += b
        return addr

    def decode(self, addr):
        """Amaranth decoder: ``{field: Value}`` for a byte-address ``Value`` (combinational)."""
        pieces = {f: [] for f in FIELDS}
        pos = self.offset_bits
        for f, b in self.order:
            pieces[f].append(addr[pos:pos + b])
            pos += b
        out = {f: (Cat(*p) if p else Const(0, 1)) for f, p in pieces.items()}
        if self.xor:
            gb, bb = self.width("bank_group"), self.width("bank")
            out["bank_group"] = out["bank_group"] ^ out["row"][:gb]
            out["bank"] = out["bank"] ^ out["row"][gb:gb + bb]
        return out

    def as_dict(self):
        return {"offset_bits": self.offset_bits, "order": [list(p) for p in self.order],
                "xor": self.xor, "widths": dict(self.widths)}
