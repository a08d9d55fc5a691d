"""Pack and unpack Amaranth ``StructLayout`` payloads as integers (for cocotb on flat ports)."""

__all__ = ["pack", "unpack"]


def pack(layout, **fields):
    """Integer holding ``fields`` at their offsets in ``layout`` (missing fields are 0)."""
    unknown = set(fields) - {name for name, _ in layout}
    if unknown:
        raise KeyError(f"fields not in layout: {sorted(unknown)}")
    v = 0
    for name, field in layout:
        w = field.width
        v |= (int(fields.get(name, 0)) & ((1 << w) - 1)) << field.offset
    return v


def unpack(layout, value):
    """Dict of unsigned field values of the integer ``value``."""
    value = int(value)
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in layout}
