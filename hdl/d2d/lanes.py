"""Lane layer of the D2D PHY: byte striping, lane reversal, spare-lane repair, width degrade, scrambler.

Terms
-----
- ``lanes`` N (16, 32 or 64) data lanes per direction, ``bytes_per_cycle`` W bytes per beat, and
  ``U = 8 * W / N`` unit intervals (bits) per lane per clock. W must be a multiple of N (U is a
  multiple of 8): each lane carries whole bytes, serialised bit 0 first, as UCIe does.
- Lane groups of ``G = min(N, 32)`` lanes (d2d.md §1.7: UCIe-A remaps lanes per 32-lane group). Each
  group has ``spares_per_group`` redundant lanes (default 2, d2d.md §1.7 TRD_P: "each 32-lane group
  can remap 2 lanes"). A x16 module is one group; UCIe-S has no redundant lanes and only degrades
  width, which is ``spares_per_group=0`` here.
- A *slot* is a physical lane position as seen by the receiver once the transmitter has undone a
  reversal. There are ``P = N + S`` slots (``S = groups * spares_per_group``): data slots 0..N-1,
  then the spares, group g's spare s at slot ``N + g * spares_per_group + s``.

Byte-to-lane map (full width)
-----------------------------
Byte ``b`` of a beat goes to logical lane ``b % N``, UIs ``8 * (b // N)`` .. ``+7`` of that lane's
U-bit word (bit 0 of the byte first). Lane word ``i`` of a ``lanes`` port is bits
``[i*U, (i+1)*U)``; UI 0 is the least significant bit (the channel model's convention,
sim/d2d/channel.py).

Width degrade (x16 -> x8, generally N -> N/2)
---------------------------------------------
``width`` = 0: all N logical lanes. 1: only the lower half (logical lanes 0..N/2-1), 2: only the upper
half. In a degraded width each beat takes two clocks: bytes ``0..W/2-1`` first, then ``W/2..W-1``,
each half-beat striped with the rule above over N/2 lanes (byte b -> active lane ``b % (N/2)``, UIs
``8 * (b // (N/2))``). The TX holds ``ready`` low on the first clock of a beat.

Repair
------
``repair[k]`` describes spare k (``k = g * spares_per_group + s``): when ``en`` is set, logical lane
``g * G + lane`` is carried on that spare slot instead of its own slot. The TX copies the lane's
word onto the spare (its own slot keeps the same word); the RX reads it from the spare.

Reversal (d2d.md §1.7: "done in the TX only", data and redundant lanes reversed)
--------------------------------------------------------------------------------
With ``reverse`` set, the TX drives slot ``k`` on physical lane ``P - 1 - k``; on reversed wiring the
receiver then sees slot k on its lane k.

Scrambler (optional, ``scrambler=True``)
---------------------------------------
One additive LFSR per slot, G(x) = x^23 + x^21 + x^16 + x^8 + x^5 + x^2 + 1 (the PCIe 3.0
128b/130b scrambler polynomial; d2d.md §1.7 says UCIe scrambles with a 23-bit LFSR per lane, but its
polynomial and seeds are an open item there, so this choice and the seeds are ours). Galois form:
per UI, ``out = s[22]``; ``s = (s << 1) & (2^23 - 1)``, and ``s ^= 0x210125`` when ``out``; the data
bit is XORed with ``out``. Slot k's seed is :func:`scrambler_seed`. The LFSRs hold their seeds while
``hold`` is high and advance U steps per clock carried by the Valid lane; the TX scrambles and
the RX descrambles only when ``scramble`` is high (both ends must agree). ``hold`` also realigns the
degrade gearbox (half-beat phase); training keeps it high until the main-band data test.

Valid lane
----------
``lanes_valid`` marks clocks whose lane words carry data (the UCIe Valid lane). Training patterns are
sent with ``lanes_valid`` low.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LaneConfig", "LaneTx", "LaneRx", "spare_layout", "scrambler_seed", "lfsr_symbolic",
           "LFSR_TAPS", "LFSR_BITS", "GROUP_LANES"]

LFSR_BITS = 23
LFSR_TAPS = 0x210125   # x^21 + x^16 + x^8 + x^5 + x^2 + 1 (x^23 implicit)
GROUP_LANES = 32       # d2d.md §1.7: repair resources per 32-lane group


def scrambler_seed(slot):
    """Our per-slot LFSR seed (nonzero, 23 bits)."""
    s = (0x1DBFBC ^ (slot * 0x2545F)) & ((1 << LFSR_BITS) - 1)
    return s or 1


def spare_layout(group_lanes=GROUP_LANES):
    return data.StructLayout({"en": 1, "lane": range(group_lanes)})


class LaneConfig:
    """Validated lane-layer geometry shared by :class:`LaneTx` and :class:`LaneRx`."""

    def __init__(self, lanes=16, bytes_per_cycle=16, spares_per_group=2):
        if lanes not in (16, 32, 64):
            raise TypeError(f"lanes must be 16, 32 or 64, not {lanes!r}")
        if (isinstance(bytes_per_cycle, bool) or not isinstance(bytes_per_cycle, int)
                or bytes_per_cycle < lanes or bytes_per_cycle % lanes):
            raise TypeError(f"bytes_per_cycle must be a positive multiple of lanes ({lanes}), "
                            f"not {bytes_per_cycle!r}")
        if spares_per_group not in (0, 1, 2, 3, 4):
            raise TypeError(f"spares_per_group must be in 0..4, not {spares_per_group!r}")
        self.lanes = lanes
        self.bytes_per_cycle = bytes_per_cycle
        self.spares_per_group = spares_per_group
        self.group_lanes = min(lanes, GROUP_LANES)
        self.groups = lanes // self.group_lanes
        self.spares = self.groups * spares_per_group
        self.slots = lanes + self.spares
        self.ui = 8 * bytes_per_cycle // lanes

    def __repr__(self):
        return (f"LaneConfig(lanes={self.lanes}, bytes_per_cycle={self.bytes_per_cycle}, "
                f"spares_per_group={self.spares_per_group})")

    def spare_slot(self, group, s):
        return self.lanes + group * self.spares_per_group + s

    def config_members(self):
        return {
            "repair": In(data.ArrayLayout(spare_layout(self.group_lanes), self.spares)),
            "width": In(2),
            "scramble": In(1),
            "hold": In(1),
        }


def lfsr_symbolic(steps):
    """Symbolic unrolling of the slot LFSR over ``steps`` UIs.

    Returns ``(outs, nexts)``: ``outs[t]`` and ``nexts[k]`` are bit masks over the 23 state bits:
    output bit t = XOR of the state bits in ``outs[t]``; next state bit k likewise.
    """
    state = [1 << k for k in range(LFSR_BITS)]
    outs = []
    for _ in range(steps):
        out = state[LFSR_BITS - 1]
        outs.append(out)
        new = [0] * LFSR_BITS
        for k in range(LFSR_BITS):
            prev = state[k - 1] if k else 0
            new[k] = prev ^ (out if (LFSR_TAPS >> k) & 1 else 0)
        state = new
    return outs, state


def _xor_of(sig, mask):
    terms = [sig[k] for k in range(LFSR_BITS) if (mask >> k) & 1]
    return Cat(*terms).xor() if terms else Const(0, 1)


def _lfsr_bank(m, cfg, advance, hold, name):
    """Per-slot LFSRs; returns the list of per-slot U-bit keystream words for the present beat."""
    outs, nexts = lfsr_symbolic(cfg.ui)
    keys = []
    for k in range(cfg.slots):
        st = Signal(LFSR_BITS, name=f"{name}_lfsr{k}", init=scrambler_seed(k))
        key = Signal(cfg.ui, name=f"{name}_key{k}")
        m.d.comb += key.eq(Cat(*[_xor_of(st, o) for o in outs]))
        with m.If(hold):
            m.d.sync += st.eq(scrambler_seed(k))
        with m.Elif(advance):
            m.d.sync += st.eq(Cat(*[_xor_of(st, n) for n in nexts]))
        keys.append(key)
    return keys


def _stripe(beat_bytes, nlanes, ui):
    """Lane words (list of U-bit values) for bytes striped over ``nlanes`` lanes."""
    per_lane = ui // 8
    return [Cat(*[beat_bytes[j * nlanes + l] for j in range(per_lane)]) for l in range(nlanes)]


class LaneTx(wiring.Component):
    """Lane-layer transmitter: beats in, physical lane words out.

    Parameters
    ----------
    lanes, bytes_per_cycle, spares_per_group : see :class:`LaneConfig`.
    scrambler : bool
        Build the per-slot LFSR scramblers (``scramble`` then enables them at run time).

    Members
    -------
    data : In(8 * W), valid : In(1), ready : Out(1)
        Beat input (stream rules: hold ``data`` while ``valid & ~ready``). ``ready`` is 1 at full
        width and on the second clock of each beat when degraded.
    reverse : In(1)
        Drive slot k on physical lane P-1-k.
    repair, width, scramble, hold : In
        Configuration (module docstring); change only while no beat is in flight.
    override : In(1), override_lanes : In(P * U)
        Training: send ``override_lanes`` (slot words, before reversal) instead of data, with the
        Valid lane low; ``valid`` is not accepted meanwhile (``ready`` low).
    lanes : Out(P * U), lanes_valid : Out(1)
        Physical lane words and the Valid lane, registered.

    Latency: 1 clock from an accepted beat (half-beat when degraded) to ``lanes``.
    """

    def __init__(self, lanes=16, bytes_per_cycle=16, spares_per_group=2, scrambler=False):
        try:
            self.cfg = LaneConfig(lanes, bytes_per_cycle, spares_per_group)
        except TypeError:
            self._MustUse__used = True   # no "never used" warning for a rejected object
            raise
        self._scrambler = bool(scrambler)
        c = self.cfg
        super().__init__({
            "data": In(8 * c.bytes_per_cycle),
            "valid": In(1),
            "ready": Out(1),
            "reverse": In(1),
            **c.config_members(),
            "override": In(1),
            "override_lanes": In(c.slots * c.ui),
            "lanes": Out(c.slots * c.ui),
            "lanes_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.cfg
        N, W, U, P = c.lanes, c.bytes_per_cycle, c.ui, c.slots
        nbytes = [self.data[8 * i:8 * i + 8] for i in range(W)]
        phase = Signal()
        degraded = self.width != 0

        full = _stripe(nbytes, N, U)
        lo = _stripe(nbytes[:W // 2], N // 2, U)
        hi = _stripe(nbytes[W // 2:], N // 2, U)
        half = [Mux(phase, h, l) for l, h in zip(lo, hi)]
        logical = []
        for lane in range(N):
            active = (self.width == 1) if lane < N // 2 else (self.width == 2)
            logical.append(Mux(degraded, Mux(active, half[lane % (N // 2)], 0), full[lane]))

        slots = list(logical)
        for g in range(c.groups):
            group = Array(logical[g * c.group_lanes:(g + 1) * c.group_lanes])
            for s in range(c.spares_per_group):
                entry = self.repair[g * c.spares_per_group + s]
                slots.append(Mux(entry.en, group[entry.lane], 0))

        send = Signal()
        m.d.comb += [
            send.eq(self.valid & ~self.override),
            self.ready.eq(~self.override & (~degraded | phase)),
        ]
        with m.If(~degraded | self.override | self.hold):
            m.d.sync += phase.eq(0)
        with m.Elif(send):
            m.d.sync += phase.eq(~phase)

        if self._scrambler:
            keys = _lfsr_bank(m, c, send, self.hold, "tx")
            slots = [Mux(self.scramble, s ^ k, s) for s, k in zip(slots, keys)]

        out_slots = [Mux(self.override, self.override_lanes[k * U:(k + 1) * U], Mux(send, slots[k], 0))
                     for k in range(P)]
        phys = [Mux(self.reverse, out_slots[P - 1 - k], out_slots[k]) for k in range(P)]
        m.d.sync += [self.lanes.eq(Cat(*phys)), self.lanes_valid.eq(send)]
        return m


class LaneRx(wiring.Component):
    """Lane-layer receiver: physical lane words in, beats out.

    Members
    -------
    lanes : In(P * U), lanes_valid : In(1)
        From the channel (slot k on lane k: the far TX has undone any reversal).
    repair, width, scramble, hold : In
        Configuration, identical to the far transmitter's (training exchanges it).
    raw : Out(P * U), raw_valid : Out(1)
        The registered lane words before descrambling (for training's lane tests).
    data : Out(8 * W), valid : Out(1)
        Received beats. No back-pressure: the consumer must take every beat.

    Latency: 1 clock from ``lanes`` (of a beat's last half when degraded) to ``data``.
    """

    def __init__(self, lanes=16, bytes_per_cycle=16, spares_per_group=2, scrambler=False):
        try:
            self.cfg = LaneConfig(lanes, bytes_per_cycle, spares_per_group)
        except TypeError:
            self._MustUse__used = True   # no "never used" warning for a rejected object
            raise
        self._scrambler = bool(scrambler)
        c = self.cfg
        super().__init__({
            "lanes": In(c.slots * c.ui),
            "lanes_valid": In(1),
            **c.config_members(),
            "raw": Out(c.slots * c.ui),
            "raw_valid": Out(1),
            "data": Out(8 * c.bytes_per_cycle),
            "valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.cfg
        N, W, U, P = c.lanes, c.bytes_per_cycle, c.ui, c.slots
        m.d.sync += [self.raw.eq(self.lanes), self.raw_valid.eq(self.lanes_valid)]
        slots = [self.raw[k * U:(k + 1) * U] for k in range(P)]
        if self._scrambler:
            keys = _lfsr_bank(m, c, self.raw_valid, self.hold, "rx")
            slots = [Mux(self.scramble, s ^ k, s) for s, k in zip(slots, keys)]

        logical = []
        for lane in range(N):
            g, idx = divmod(lane, c.group_lanes)
            word = slots[lane]
            for s in range(c.spares_per_group):
                k = g * c.spares_per_group + s
                entry = self.repair[k]
                word = Mux(entry.en & (entry.lane == idx), slots[N + k], word)
            logical.append(word)

        def unstripe(words, nlanes):
            per_lane = U // 8
            out = [None] * (nlanes * per_lane)
            for l, w in enumerate(words):
                for j in range(per_lane):
                    out[j * nlanes + l] = w[8 * j:8 * j + 8]
            return Cat(*out)

        full = unstripe(logical, N)
        half = Mux(self.width == 2, unstripe(logical[N // 2:], N // 2), unstripe(logical[:N // 2], N // 2))
        phase = Signal()
        first = Signal(4 * W)
        degraded = self.width != 0
        with m.If(~degraded | self.hold):
            m.d.sync += phase.eq(0)
        with m.Elif(self.raw_valid):
            m.d.sync += phase.eq(~phase)
            with m.If(~phase):
                m.d.sync += first.eq(half)
        m.d.comb += [
            self.data.eq(Mux(degraded, Cat(first, half), full)),
            self.valid.eq(self.raw_valid & (~degraded | phase)),
        ]
        return m
