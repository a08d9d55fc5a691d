"""Native host port of the HBM controller: a simple valid/ready request and response pair.

One request moves one burst (``bytes_per_burst`` bytes, 32 B for every preset) at a byte address
aligned to the burst. Reads return in request order on the response channel; writes are posted
(accepted = will be written before any later request to the same burst is served).

Request members (host -> controller): ``valid``, ``ready`` (controller -> host), ``we``,
``addr`` (byte address, low ``offset_bits`` ignored), ``wdata`` (8 x bytes_per_burst bits, byte
``j`` in bits ``8j..8j+7``), ``wstrb`` (one bit per byte, 1 = write the byte; any pattern,
sparse strobes included: without ECC they become the DFI data mask, with ECC a write covering part
of a 64-bit word is done by a read-modify-write inside the controller).

Response members (controller -> host): ``valid``, ``ready`` (host -> controller), ``rdata``,
``err`` (1 = uncorrectable ECC error in this burst).

A transfer happens in a cycle where ``valid & ready``; ``valid`` must stay high and the payload
stable until then. ``ready`` of the request may depend on the payload (the controller's hazard
check compares addresses).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.params import check_int

__all__ = ["NativeRequestSignature", "NativeResponseSignature"]


class NativeRequestSignature(wiring.Signature):
    """Request channel, from the host's (initiator's) side."""

    def __init__(self, *, addr_width, data_width):
        self.addr_width = check_int("addr_width", addr_width, lo=1, hi=64)
        self.data_width = check_int("data_width", data_width, lo=8)
        super().__init__({"valid": Out(1), "ready": In(1), "we": Out(1),
                          "addr": Out(addr_width), "wdata": Out(data_width),
                          "wstrb": Out(data_width // 8)})

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))


class NativeResponseSignature(wiring.Signature):
    """Read-response channel, from the host's side (so ``valid``/``rdata`` are inputs)."""

    def __init__(self, *, data_width):
        self.data_width = check_int("data_width", data_width, lo=8)
        super().__init__({"valid": In(1), "ready": Out(1), "rdata": In(data_width),
                          "err": In(1)})

    def __eq__(self, other):
        return type(other) is type(self) and other.data_width == self.data_width

    def __hash__(self):
        return hash((type(self), self.data_width))
