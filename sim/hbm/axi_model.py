"""Golden AXI4 burst model, written from the AMBA AXI and ACE Protocol Specification (ARM IHI 0022,
A3.4.1 "Address structure", A3.4.3 "Data read and write structure"), independent of the RTL.

:func:`beats` is the specification's pseudo-code: for a burst (start address, AxSIZE, AxLEN,
AxBURST) on a bus of ``bus_bytes`` byte lanes it gives, per beat N, ``Address_N`` and the lanes
``Lower_Byte_Lane .. Upper_Byte_Lane`` that carry data. :class:`ByteMemory` applies write beats
(data + strobes) lane by lane to a byte-addressed memory and gives the expected lanes of read
beats. :func:`legal` is the set of burst restrictions a subordinate can check (A3.4.1).
"""

__all__ = ["FIXED", "INCR", "WRAP", "beats", "legal", "ByteMemory"]

FIXED, INCR, WRAP = 0, 1, 2


def legal(start, size, length, burst, bus_bytes):
    """True if a subordinate must serve the burst (else it may answer SLVERR)."""
    nbytes = 1 << size
    if nbytes > bus_bytes or burst not in (FIXED, INCR, WRAP):
        return False
    if burst == WRAP and (length not in (2, 4, 8, 16) or start % nbytes):
        return False
    return True


def beats(start, size, length, burst, bus_bytes):
    """``[(Address_N, Lower_Byte_Lane, Upper_Byte_Lane)]`` for N = 1..length.

    ``length`` = AxLEN + 1 beats, ``size`` = AxSIZE. A transcription of the specification's
    ``DataTransfer()`` pseudo-code (A3.4.1).
    """
    number_bytes = 1 << size
    addr = start
    aligned_address = (addr // number_bytes) * number_bytes
    aligned = aligned_address == addr
    dtsize = number_bytes * length
    if burst == WRAP:
        lower_wrap_boundary = (addr // dtsize) * dtsize
        upper_wrap_boundary = lower_wrap_boundary + dtsize
    out = []
    for _ in range(length):
        lower = addr - (addr // bus_bytes) * bus_bytes
        if aligned:
            upper = lower + number_bytes - 1
        else:
            upper = aligned_address + number_bytes - 1 - (addr // bus_bytes) * bus_bytes
        out.append((addr, lower, upper))
        if burst != FIXED:
            if aligned:
                addr = addr + number_bytes
                if burst == WRAP and addr >= upper_wrap_boundary:
                    addr = lower_wrap_boundary
            else:
                addr = aligned_address + number_bytes
                aligned = True          # every beat after the first is aligned
    return out


class ByteMemory:
    """Byte-addressed memory (unwritten bytes read as 0) seen through AXI beats."""

    def __init__(self, bus_bytes):
        self.bus_bytes = bus_bytes
        self.mem = {}

    def write_beat(self, address_n, lower, upper, wdata, wstrb):
        """Store the lanes ``lower..upper`` of ``wdata`` whose ``wstrb`` bit is set."""
        base = (address_n // self.bus_bytes) * self.bus_bytes
        for lane in range(lower, upper + 1):
            if wstrb >> lane & 1:
                self.mem[base + lane] = (wdata >> (8 * lane)) & 0xFF

    def read_lanes(self, address_n, lower, upper):
        """``{lane: byte}`` a read beat at ``address_n`` must carry."""
        base = (address_n // self.bus_bytes) * self.bus_bytes
        return {lane: self.mem.get(base + lane, 0) for lane in range(lower, upper + 1)}

    def check_beat(self, address_n, lower, upper, rdata):
        """Lanes of ``rdata`` that differ from the memory: ``[(lane, got, want)]``."""
        want = self.read_lanes(address_n, lower, upper)
        return [(ln, (rdata >> (8 * ln)) & 0xFF, v) for ln, v in want.items()
                if (rdata >> (8 * ln)) & 0xFF != v]
