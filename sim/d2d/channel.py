"""Lane-level channel model between die A and die B (error injection for the D2D link).

A *lane word* is what one die's TX drives in one clock: ``lanes`` physical lanes (data lanes plus
spares, see hdl/d2d/lanes.py) of ``ui_per_cycle`` unit intervals each. As an integer, lane ``i``
occupies bits ``[i*U, (i+1)*U)`` and bit ``i*U + t`` is UI ``t`` of that lane in the cycle (UI 0 is
sent first). As an array it is ``uint8`` bits of shape ``(lanes, U)``.

Impairments, applied in this order to each word (a word is one cycle):

1. random bit errors: every bit flips independently with probability ``ber`` (seeded numpy RNG;
   geometric gaps between errors, so the cost is O(errors), not O(bits));
2. burst errors: every ``burst_every`` bits of the link's bit stream a burst starts and inverts
   ``burst_len`` consecutive UIs of one lane (a lane glitch). Bits are numbered
   ``g = (cycle * lanes + lane) * U + t``; the burst starting at ``g = k * burst_every`` (k >= 1)
   hits lane ``(g // U) % lanes`` from UI ``t`` on, continuing into later cycles if needed;
3. stuck lanes: TX physical lane ``stuck_lane`` (or each lane of a tuple) reads ``stuck_value``
   on the far side;
4. reversed wiring: RX lane ``j`` receives TX lane ``lanes - 1 - j`` (d2d.md §1.7: reversal is a
   package property that the TX undoes);
5. latency: the word appears at the RX ``latency`` cycles later (zeros before that).

The Valid lane is modelled as reliable (UCIe has a redundant Valid lane, d2d.md §1.7). The sideband
is a 2-bit word per cycle per direction (hdl/d2d/sideband.py: bit 0 data wire, bit 1 forwarded
clock running); it gets the data lanes' latency and, optionally, random errors on its data wire at
``sideband_ber`` (seeded, independent of the main band); the clock wire is reliable.

Use :class:`Channel` in plain Python (``step`` per cycle, ``transmit`` for a block of cycles,
vectorised) and :func:`connect` in a cocotb testbench to move words between two DUT ports.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from ...hdl.common.params import ConfigError, check_int, check_number

__all__ = ["ChannelConfig", "Channel", "connect", "amaranth_connect", "word_to_bits", "bits_to_word"]


@dataclass(frozen=True)
class ChannelConfig:
    """Channel parameters (validated; a bad value raises ConfigError naming the field)."""

    lanes: int = 16
    ui_per_cycle: int = 8
    latency: int = 0
    ber: float = 0.0
    burst_every: int = 0
    burst_len: int = 0
    stuck_lane: object = -1       # -1: none; a lane index, or a tuple of lane indices
    stuck_value: int = 0
    reverse: bool = False
    sideband_ber: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_int("lanes", self.lanes, lo=1, hi=1024)
        check_int("ui_per_cycle", self.ui_per_cycle, lo=1, hi=4096)
        check_int("latency", self.latency, lo=0, hi=1 << 20)
        check_number("ber", self.ber, lo=0.0, hi=0.5)
        check_int("burst_every", self.burst_every, lo=0)
        check_int("burst_len", self.burst_len, lo=0)
        if self.burst_every and not self.burst_len:
            raise ConfigError("burst_len", "must be at least 1 when burst_every is set")
        if self.burst_len and self.burst_every and self.burst_len > self.burst_every:
            raise ConfigError("burst_len", f"must not exceed burst_every ({self.burst_every})")
        lanes = self.stuck_lane if isinstance(self.stuck_lane, tuple) else (self.stuck_lane,)
        for k in lanes:
            check_int("stuck_lane", k, lo=-1, hi=self.lanes - 1)
        check_int("stuck_value", self.stuck_value, choices=(0, 1))
        if not isinstance(self.reverse, bool):
            raise ConfigError("reverse", f"must be a bool, not {self.reverse!r}")
        check_number("sideband_ber", self.sideband_ber, lo=0.0, hi=0.5)
        check_int("seed", self.seed, lo=0)


def word_to_bits(word, lanes, ui):
    """Integer lane word -> ``uint8`` bit array of shape ``(lanes, ui)``."""
    nbytes = (lanes * ui + 7) // 8
    raw = np.frombuffer(int(word).to_bytes(nbytes, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:lanes * ui].reshape(lanes, ui)


def bits_to_word(bits):
    """``uint8`` bit array ``(lanes, ui)`` -> integer lane word."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1),
                                      bitorder="little").tobytes(), "little")


class Channel:
    """One direction of the link (TX of one die -> RX of the other).

    Parameters
    ----------
    config : ChannelConfig, or keyword arguments for one.

    The configuration may be replaced between calls (``channel.config = dataclasses.replace(...)``)
    to inject a fault mid-run (stuck lanes, reversal); latency, BER and bursts must stay the same.

    Counters: ``cycles``, ``bits`` (data-lane bits carried), ``flipped`` (bits inverted by BER and
    bursts; a stuck lane is not counted), ``bursts``, ``sideband_bits``, ``sideband_flipped``.
    """

    def __init__(self, config=None, **kwargs):
        if config is None:
            config = ChannelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass a ChannelConfig or keyword arguments, not both")
        self.config = c = config
        self._rng = np.random.default_rng(c.seed)
        self._sb_rng = np.random.default_rng([c.seed, 1])
        self._line = deque([np.zeros((c.lanes, c.ui_per_cycle), np.uint8)] * c.latency)
        self._sb_line = deque([0] * c.latency)
        self._valid_line = deque([0] * c.latency)
        self._word_line = deque([0] * c.latency)
        self._next_err = self._draw_gap(0)
        self._next_burst = c.burst_every if c.burst_every else None
        self._active = []                 # bursts in progress: [lane, first_ui, last_ui] (lane time)
        self.cycles = 0
        self.bits = 0
        self.flipped = 0
        self.bursts = 0
        self.sideband_bits = 0
        self.sideband_flipped = 0

    # -- error processes -----------------------------------------------------------------------
    def _draw_gap(self, start):
        if self.config.ber <= 0:
            return None
        return start + int(self._rng.geometric(self.config.ber)) - 1

    def _impair(self, block):
        """Apply BER, bursts, stuck lane, reversal to ``block`` (T, lanes, U) in place; return it."""
        c = self.config
        T, P, U = block.shape
        per_cycle = P * U
        g0 = self.cycles * per_cycle
        g1 = g0 + T * per_cycle
        flat = block.reshape(-1)
        if self._next_err is not None:
            pos = []
            g = self._next_err
            while g < g1:
                pos.append(g)
                g = self._draw_gap(g + 1)
            self._next_err = g
            if pos:
                flat[np.asarray(pos, dtype=np.int64) - g0] ^= 1
                self.flipped += len(pos)
        if self._next_burst is not None:
            while self._next_burst < g1:
                g = self._next_burst
                lane = (g // U) % P
                t0 = (g // per_cycle) * U + g % U
                self._active.append([lane, t0, t0 + c.burst_len])
                self._next_burst += c.burst_every
                self.bursts += 1
            t_lo, t_hi = self.cycles * U, (self.cycles + T) * U
            keep = []
            for lane, a, b in self._active:
                lo, hi = max(a, t_lo), min(b, t_hi)
                if lo < hi:
                    t = np.arange(lo, hi) - t_lo
                    block[t // U, lane, t % U] ^= 1
                    self.flipped += hi - lo
                if b > t_hi:
                    keep.append([lane, a, b])
            self._active = keep
        stuck = [k for k in (c.stuck_lane if isinstance(c.stuck_lane, tuple) else (c.stuck_lane,)) if k >= 0]
        if stuck:
            block[:, stuck, :] = c.stuck_value
        if c.reverse:
            block = block[:, ::-1, :]
        return block

    # -- public API -----------------------------------------------------------------------------
    def transmit(self, block):
        """Carry ``block`` (uint8 bits, shape (T, lanes, U)) through T cycles; returns (T, lanes, U).

        Equivalent to T calls of :meth:`step_bits`, vectorised (this is the benchmark path). With
        latency, use either this block path or the per-cycle path (:meth:`step`,
        :meth:`step_bits`) on one channel, not both.
        """
        c = self.config
        self._use("block")
        block = np.array(block, dtype=np.uint8, copy=True)
        if block.ndim != 3 or block.shape[1:] != (c.lanes, c.ui_per_cycle):
            raise ValueError(f"block must have shape (T, {c.lanes}, {c.ui_per_cycle}), not {block.shape}")
        T = block.shape[0]
        out = self._impair(block)
        self.cycles += T
        self.bits += out.size
        if c.latency == 0:
            return out
        full = np.concatenate([np.stack(list(self._line)), out])
        self._line = deque(full[T:])
        return full[:T]

    def _use(self, mode):
        if self.config.latency and getattr(self, "_mode", mode) != mode:
            raise RuntimeError("a channel with latency is used either per cycle (step) or in blocks "
                               "(transmit), not both")
        self._mode = mode

    def _needs_bits(self):
        """Whether this cycle's word must be unpacked (a bit error or burst may touch it)."""
        c = self.config
        if c.ui_per_cycle % 8:
            return True
        g1 = (self.cycles + 1) * c.lanes * c.ui_per_cycle
        if self._next_err is not None and self._next_err < g1:
            return True
        return bool(self._active) or (self._next_burst is not None and self._next_burst < g1)

    def step(self, lanes_word):
        """One cycle: integer lane word in (from die A's TX), integer lane word out (to die B's RX).

        A cycle that no impairment touches is passed through without unpacking (the cocotb path).
        """
        c = self.config
        self._use("cycle")
        word = int(lanes_word)
        if self._needs_bits():
            bits = word_to_bits(word, c.lanes, c.ui_per_cycle)[None].copy()
            word = bits_to_word(self._impair(bits)[0])
        else:                       # stuck lanes and reversal on whole bytes (U is a multiple of 8)
            U = c.ui_per_cycle
            for k in (c.stuck_lane if isinstance(c.stuck_lane, tuple) else (c.stuck_lane,)):
                if k >= 0:
                    mask = ((1 << U) - 1) << (k * U)
                    word = (word | mask) if c.stuck_value else (word & ~mask)
            if c.reverse:
                nb = c.lanes * U // 8
                lanes = np.frombuffer(word.to_bytes(nb, "little"), np.uint8).reshape(c.lanes, U // 8)
                word = int.from_bytes(lanes[::-1].tobytes(), "little")
        self.cycles += 1
        self.bits += c.lanes * c.ui_per_cycle
        if c.latency == 0:
            return word
        self._word_line.append(word)
        return self._word_line.popleft()

    def step_bits(self, bits):
        """One cycle: bit array (lanes, U) in, bit array (lanes, U) out (per-cycle path)."""
        c = self.config
        return word_to_bits(self.step(bits_to_word(bits)), c.lanes, c.ui_per_cycle)

    def step_valid(self, valid):
        """One cycle of the (reliable) Valid lane: same latency as the data lanes."""
        if self.config.latency == 0:
            return int(valid)
        self._valid_line.append(int(valid))
        return self._valid_line.popleft()

    def step_sideband(self, bit):
        """One cycle of the sideband: the word sent now in (bit 0 data, bit 1 clock), the word
        arriving now out. Only the data bit is subject to ``sideband_ber``."""
        bit = int(bit) & 3
        self.sideband_bits += 1
        if self.config.sideband_ber and self._sb_rng.random() < self.config.sideband_ber:
            bit ^= 1
            self.sideband_flipped += 1
        if self.config.latency == 0:
            return bit
        self._sb_line.append(bit)
        return self._sb_line.popleft()


def _u(value):
    """Unsigned integer of a cocotb value (LogicArray for vectors, Logic for 1-bit signals)."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


async def connect(clock, channel, tx_lanes, rx_lanes, tx_valid=None, rx_valid=None,
                  sb_tx=None, sb_rx=None, cycles=None):
    """cocotb coroutine: each cycle move die A's lane outputs through ``channel`` to die B's inputs.

    At every falling edge of ``clock`` it reads ``tx_lanes`` (and the optional Valid lane and
    serial sideband bit), steps the channel and drives ``rx_lanes`` etc., so die B's
    registers capture the word at the next rising edge. Start one per direction with
    ``cocotb.start_soon(connect(dut.clk, ch_ab, dut.a_tx_lanes, dut.b_rx_lanes, ...))``.
    Runs forever unless ``cycles`` is given. Drives the RX side to 0 immediately (time 0).
    """
    from cocotb.triggers import FallingEdge

    rx_lanes.value = 0
    if rx_valid is not None:
        rx_valid.value = 0
    if sb_rx is not None:
        sb_rx.value = 0
    n = 0
    while cycles is None or n < cycles:
        await FallingEdge(clock)
        rx_lanes.value = channel.step(_u(tx_lanes.value))
        v = channel.step_valid(_u(tx_valid.value) if tx_valid is not None else 0)
        if rx_valid is not None:
            rx_valid.value = v
        if sb_tx is not None:
            sb_rx.value = channel.step_sideband(_u(sb_tx.value))
        n += 1


def amaranth_connect(channel, tx_lanes, rx_lanes, tx_valid=None, rx_valid=None,
                     sb_tx=None, sb_rx=None):
    """Amaranth-simulator testbench doing what :func:`connect` does, for ``sim.add_testbench``.

    Returns an ``async def bench(ctx)`` that runs forever (add it with ``background=True``):
    after every clock edge it reads the TX signals, steps the channel and sets the RX signals,
    which the RX registers capture at the next edge.
    """
    async def bench(ctx):
        ctx.set(rx_lanes, 0)
        async for _ in ctx.tick():
            ctx.set(rx_lanes, channel.step(ctx.get(tx_lanes)))
            v = channel.step_valid(ctx.get(tx_valid) if tx_valid is not None else 0)
            if rx_valid is not None:
                ctx.set(rx_valid, v)
            if sb_tx is not None:
                ctx.set(sb_rx, channel.step_sideband(ctx.get(sb_tx)))
    return bench
