"""A one-loop AXI4 manager for the HBM testbench: no coroutine per channel, transfer or cycle.

cocotbext-axi's ``AxiMaster`` runs a coroutine per AXI channel and per operation, each waking at
every clock edge: on ``hbm_top`` that held a Verilator run to a few hundred cycles per second,
far too slow for the 1M-command benchmark. :class:`AxiHost` is the same manager written as two
plain methods that the testbench's single clock loop calls once per cycle, for every port:

1. :meth:`AxiHost.drive`, at the falling edge in the middle of cycle ``n``: put the next AW, W and
   AR items on the bus (or hold the current one until it is accepted), drive ``BREADY`` and
   ``RREADY`` (low with probability ``backpressure``);
2. :meth:`AxiHost.sample`, in the ``ReadOnly`` phase of the same time step: every input has
   settled, so ``VALID && READY`` here is exactly the handshake that the rising edge ending cycle
   ``n`` performs (the subordinate may make ``READY`` depend on ``VALID`` combinationally; the
   values are read after that logic settled). Accepted items are retired, B and R beats are
   matched to the oldest outstanding operation of their ID (AXI: in order per ID).

Operations are :class:`Op` objects: ``write`` (``data`` bytes, ``beats`` x bus width) or read;
``on_done(op)`` is called from :meth:`sample` when the write response or the last read beat
arrives, with ``op.resp`` (worst response), ``op.data`` (read bytes) and, for reads,
``op.latency`` (cycles from AR accepted to the first R beat, counted by edges).

Signals are read and written through cocotb's GPI object directly (``handle._handle``), like
``dfi_monitor._reader``: the ``LogicArray`` layer costs more than the simulation. Writes use the
no-delay action: they are done in the middle of a cycle, never at a clock edge.
"""

import random
from collections import defaultdict, deque

from .dfi_monitor import _reader

__all__ = ["Op", "AxiHost"]

_NO_DELAY = 3            # cocotb GPI set action (gpi.h GPI_NO_DELAY)


def _writer(handle):
    gpi = handle._handle
    width = len(handle)
    if width <= 32:
        put = gpi.set_signal_val_int
        return lambda v: put(_NO_DELAY, v)
    put = gpi.set_signal_val_binstr
    fmt = f"0{width}b"
    return lambda v: put(_NO_DELAY, format(v, fmt))


class Op:
    """One AXI burst: ``addr`` (aligned to the bus width), ``beats``, ``write``, ``data`` (bytes,
    for writes), ``aid`` (AXI ID), ``tag`` (the caller's), ``on_done`` (callable or None)."""

    __slots__ = ("addr", "beats", "write", "data", "aid", "tag", "on_done", "resp", "latency",
                 "chunks", "ar_cycle")

    def __init__(self, addr, beats, write, data=None, aid=0, tag=None, on_done=None):
        self.addr, self.beats, self.write, self.data = addr, beats, write, data
        self.aid, self.tag, self.on_done = aid, tag, on_done
        self.resp = 0
        self.latency = None
        self.chunks = []
        self.ar_cycle = None


class AxiHost:
    """AXI4 manager for one ``<prefix>__*`` subordinate port (full-width INCR bursts).

    Parameters
    ----------
    dut : cocotb handle
        Top level.
    prefix : str
        Port prefix, e.g. ``ch0_s_axi``.
    backpressure : float
        Probability that ``BREADY`` / ``RREADY`` is low in a cycle (0 = always ready).
    rng : random.Random, optional
        Source of the back-pressure pattern.
    """

    def __init__(self, dut, prefix, *, backpressure=0.0, rng=None):
        self.prefix = prefix
        sig = lambda n: getattr(dut, f"{prefix}__{n}")
        self.width = len(sig("wdata"))
        if self.width % 8:
            raise ValueError(f"{prefix}__wdata is {self.width} bits, not whole bytes")
        self.nbytes = self.width // 8
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), not {backpressure!r}")
        self.backpressure = backpressure
        self.rng = rng or random.Random(1)
        self._in = {n: _reader(sig(n), f"{prefix}__{n}") for n in
                    ("awready", "wready", "arready", "bvalid", "bid", "bresp",
                     "rvalid", "rid", "rdata", "rresp", "rlast")}
        self._handles = {n: sig(n) for n in
                         ("awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata",
                          "wstrb", "wlast", "wvalid", "bready", "arid", "araddr", "arlen",
                          "arsize", "arburst", "arvalid", "rready")}
        self._out = {n: _writer(h) for n, h in self._handles.items()}
        self._size = (self.nbytes - 1).bit_length()
        self._strb = (1 << self.nbytes) - 1
        self._aw, self._w, self._ar = deque(), deque(), deque()   # waiting to be driven
        self._cur_aw = self._cur_w = self._cur_ar = None          # on the bus, not yet accepted
        self._bready = self._rready = 0
        self._wr = defaultdict(deque)       # AXI ID -> writes awaiting B, in issue order
        self._rd = defaultdict(deque)       # AXI ID -> reads awaiting R, in issue order
        self.outstanding = 0
        self.first_request = None            # cycle of the first AW/AR handshake
        self.last_r = 0                      # cycle of the last R beat
        self.latencies = []                  # per read: AR accepted -> first R beat (cycles)
        self.r_beats = 0

    def idle_bus(self):
        """Drive every manager output to its idle value (call at time 0: Icarus is 4-state).

        Uses cocotb's scheduled writes: Icarus drops no-delay writes made before time 0 settles.
        """
        fixed = {"awsize": self._size, "arsize": self._size, "awburst": 1, "arburst": 1}  # INCR
        for n, h in self._handles.items():
            h.value = fixed.get(n, 0)

    # --- submitting ---------------------------------------------------------------------------
    def submit(self, op):
        """Queue ``op``; it goes on the bus at the next :meth:`drive` that finds the channel free."""
        if op.beats < 1 or op.beats > 256:
            raise ValueError(f"an AXI4 INCR burst has 1..256 beats, not {op.beats}")
        if op.addr % self.nbytes:
            raise ValueError(f"address {op.addr:#x} is not aligned to the {self.nbytes}-byte bus")
        self.outstanding += 1
        if op.write:
            if len(op.data) != op.beats * self.nbytes:
                raise ValueError(f"write of {op.beats} beats needs {op.beats * self.nbytes} bytes")
            self._aw.append(op)
            nb = self.nbytes
            for i in range(op.beats):
                self._w.append((int.from_bytes(op.data[i * nb:(i + 1) * nb], "little"),
                                i == op.beats - 1))
            self._wr[op.aid].append(op)
        else:
            self._ar.append(op)
            self._rd[op.aid].append(op)

    # --- per cycle ------------------------------------------------------------------------------
    def drive(self):
        """Falling edge: items on the AW/W/AR buses, BREADY/RREADY."""
        o = self._out
        if self._cur_aw is None:
            if self._aw:
                op = self._cur_aw = self._aw.popleft()
                o["awid"](op.aid)
                o["awaddr"](op.addr)
                o["awlen"](op.beats - 1)
                o["awvalid"](1)
            elif self._aw_valid:
                o["awvalid"](0)
            self._aw_valid = self._cur_aw is not None
        if self._cur_w is None:
            if self._w:
                beat = self._cur_w = self._w.popleft()
                o["wdata"](beat[0])
                o["wstrb"](self._strb)
                o["wlast"](int(beat[1]))
                o["wvalid"](1)
            elif self._w_valid:
                o["wvalid"](0)
            self._w_valid = self._cur_w is not None
        if self._cur_ar is None:
            if self._ar:
                op = self._cur_ar = self._ar.popleft()
                o["arid"](op.aid)
                o["araddr"](op.addr)
                o["arlen"](op.beats - 1)
                o["arvalid"](1)
            elif self._ar_valid:
                o["arvalid"](0)
            self._ar_valid = self._cur_ar is not None
        bp = self.backpressure
        if bp:
            b = int(self.rng.random() >= bp)
            r = int(self.rng.random() >= bp)
        else:
            b = r = 1
        if b != self._bready:
            o["bready"](b)
            self._bready = b
        if r != self._rready:
            o["rready"](r)
            self._rready = r

    _aw_valid = _w_valid = _ar_valid = False

    def sample(self, n):
        """ReadOnly phase of cycle ``n``: the handshakes of the rising edge that ends it."""
        i = self._in
        if self._cur_aw is not None and i["awready"]():
            self._cur_aw = None
            if self.first_request is None:
                self.first_request = n
        if self._cur_w is not None and i["wready"]():
            self._cur_w = None
        if self._cur_ar is not None and i["arready"]():
            self._cur_ar.ar_cycle = n
            self._cur_ar = None
            if self.first_request is None:
                self.first_request = n
        if self._bready and i["bvalid"]():
            bid = i["bid"]()
            q = self._wr.get(bid)
            if not q:
                raise AssertionError(f"{self.prefix}: B with ID {bid} in cycle {n} but no write "
                                     f"of that ID is outstanding")
            op = q.popleft()
            op.resp = i["bresp"]()
            self.outstanding -= 1
            if op.on_done is not None:
                op.on_done(op)
        if self._rready and i["rvalid"]():
            rid = i["rid"]()
            q = self._rd.get(rid)
            if not q:
                raise AssertionError(f"{self.prefix}: R with ID {rid} in cycle {n} but no read "
                                     f"of that ID is outstanding")
            op = q[0]
            if op.ar_cycle is None:
                raise AssertionError(f"{self.prefix}: R with ID {rid} in cycle {n} before its AR "
                                     f"was accepted")
            if not op.chunks:
                op.latency = n - op.ar_cycle
                self.latencies.append(op.latency)
            op.chunks.append(i["rdata"]().to_bytes(self.nbytes, "little"))
            op.resp = max(op.resp, i["rresp"]())
            self.r_beats += 1
            self.last_r = n
            last = i["rlast"]()
            if len(op.chunks) == op.beats:
                if not last:
                    raise AssertionError(f"{self.prefix}: read of {op.beats} beats at "
                                         f"{op.addr:#x}: RLAST low on its last beat (cycle {n})")
                q.popleft()
                op.data = b"".join(op.chunks)
                self.outstanding -= 1
                if op.on_done is not None:
                    op.on_done(op)
            elif last:
                raise AssertionError(f"{self.prefix}: read of {op.beats} beats at {op.addr:#x}: "
                                     f"RLAST after {len(op.chunks)} beats (cycle {n})")
