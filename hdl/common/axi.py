"""AXI4 and AXI4-Lite interface signatures (AMBA AXI and ACE Protocol Specification, IHI 0022).

Members carry the lower-case AXI signal names, so with Amaranth's ``__`` separator a port named
``m_axi`` becomes ``m_axi__awaddr`` and so on: cocotbext-axi finds it with
``AxiBus.from_prefix(dut, "m_axi")`` and ``bus_separator="__"``.

Both signatures are written from the manager's (master's) side: use ``Out(sig)`` for a manager
port and ``In(sig)`` (``sig.flip()``) for a subordinate (slave) port.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["AXI4Signature", "AXI4LiteSignature", "BURST_INCR", "RESP_OKAY", "RESP_SLVERR"]

BURST_FIXED, BURST_INCR, BURST_WRAP = 0, 1, 2
RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3


class AXI4Signature(wiring.Signature):
    """Full AXI4: five channels with IDs and INCR/FIXED/WRAP bursts of up to 256 beats."""

    def __init__(self, *, addr_width=32, data_width=64, id_width=4):
        self.addr_width = check_int("addr_width", addr_width, lo=12, hi=64)
        self.data_width = check_int("data_width", data_width, choices=(32, 64, 128, 256, 512, 1024))
        self.id_width = check_int("id_width", id_width, lo=1, hi=16)
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
            "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
            "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite: single-beat register access, 32- or 64-bit data."""

    def __init__(self, *, addr_width=12, data_width=32):
        self.addr_width = check_int("addr_width", addr_width, lo=2, hi=64)
        self.data_width = check_int("data_width", data_width, choices=(32, 64))
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
