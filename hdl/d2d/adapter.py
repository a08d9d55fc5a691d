"""The D2D adapter of one die: protocol streams <-> flits <-> lane beats, with CRC, retry, credits.

::

    s0_i, s1_i ──> arbiter (credits) ──> RetryTx (seq, replay buffer) ──> FlitTx (header, CRC) ──> tx beats
    s0_o, s1_o <── CreditRx buffers  <── RetryRx (in order, Ack/Nak) <── FlitRx (CRC check)   <── rx beats

- Streams: two protocol streams (PID 01 and 10 of the golden byte map). A transfer on ``s<k>_i``
  is one flit's payload (``payload_bytes`` of the format). ``s<k>_o`` releases it again as one
  segment (two for ``256lo``: the first 128-byte half as soon as its own CRC passed).
- Back to back, from ``link_settle`` clocks after ``link_up`` rises, the transmitter sends a
  flit in every flit slot: a replayed or new data flit if one is ready (streams taken round-robin, each only with a credit), else a control flit (PID 00) with
  the current Ack/Nak and credit returns. 256B data flits also carry the Ack/Nak (DLP ACKNUM);
  68B data flits cannot, so in 68B a control flit is sent whenever the Ack/Nak changed and the
  previous flit was a data flit (the spec's alternation of sequence and Ack/Nak flits, d2d.md §1.5).
- ``raw``: no header, CRC, retry or credits (d2d.md §1.3 Format 1): ``s0_i`` payloads go straight
  to the lanes and the receiver writes whatever arrives to ``s0_o``; ``s1`` is unused. Raw mode
  has no flow control: a stalled consumer overflows (``overflow``).

Latency (TX accept -> RX release): accept at cycle t, first beat on ``tx`` at t+1, flit complete
after ``F`` beats; the receiver checks a part one cycle after its last beat and the segment is on
``s<k>_o`` one cycle later. So release = t + F + 2 + (lane stages + channel), i.e. 2 cycles of
adapter pipeline beyond serialization for ``256``/``68``, 4 with the PHY's lane TX and RX
registers (measured end to end in tests/d2d/test_transfer.py); ``256lo`` releases its first half
after F/2 beats. A stream waits for ``ready`` until the next flit slot (at most F - 1 cycles);
that wait is before acceptance.

Counters (32-bit, free running): ``tx_flits``, ``tx_data_flits`` (new + replayed),
``rx_flits``, ``rx_data_flits`` (accepted in order), ``crc_errors``, ``replays``,
``replayed_flits``, ``retrains``, ``credit_stall_cycles`` (stream has data, no credit; both
streams summed), ``refused``, ``resyncs``, ``duplicates``; ``overflow`` is sticky.
"""

import math
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.d2d import golden
from ..common.params import ConfigError, check_choice, check_int
from .credit import CreditRx, CreditTx
from .flit import FlitRx, FlitTx, flit_beats
from .retry import RetryRx, RetryTx, replay_depth_for, round_trip_cycles

__all__ = ["D2DConfig", "D2DAdapter", "FLIT_FORMATS", "LANES", "COUNTERS"]

FLIT_FORMATS = ("68", "256", "256lo", "raw")
LANES = (16, 32, 64)
COUNTERS = ("tx_flits", "tx_data_flits", "rx_flits", "rx_data_flits", "crc_errors", "replays",
            "replayed_flits", "retrains", "credit_stall_cycles", "refused", "resyncs",
            "duplicates")


@dataclass(frozen=True)
class D2DConfig:
    """Parameters of one die's D2D adapter (validated; errors name the field).

    Attributes
    ----------
    lanes : int
        Data lanes per direction: 16 (UCIe-S), 32 or 64 (UCIe-A) (d2d.md §1.7).
    flit : str
        ``"68"``, ``"256"``, ``"256lo"`` or ``"raw"``.
    ui_per_cycle : int
        Unit intervals per lane per clock; bytes per cycle = lanes * ui_per_cycle / 8.
    flight : int
        Expected one-way channel latency in cycles, used by the sizing rules.
    replay_depth, credits, replay_timeout, resync_timeout : int or None
        ``None`` -> derived from the round trip (retry.py sizing rule).
    max_fails : int
        Consecutive failed replays before a retrain request.
    link_settle : int
        Clocks after ``link_up`` rises before the first flit is sent. The two dies enter ACTIVE a
        sideband handshake apart; a receiver takes its first valid beat after link-up as the start
        of a flit, so the transmitter waits until the partner is surely up.
    """

    lanes: int = 16
    flit: str = "256"
    ui_per_cycle: int = 8
    flight: int = 8
    replay_depth: int | None = None
    credits: int | None = None
    replay_timeout: int | None = None
    resync_timeout: int | None = None
    max_fails: int = 8
    link_settle: int = 256

    def __post_init__(self):
        check_int("lanes", self.lanes, choices=LANES)
        check_choice("flit", str(self.flit), FLIT_FORMATS)
        object.__setattr__(self, "flit", str(self.flit))
        check_int("ui_per_cycle", self.ui_per_cycle, choices=(8, 16))
        bpc = self.lanes * self.ui_per_cycle // 8
        if bpc < 4 or bpc & (bpc - 1):
            raise ConfigError("ui_per_cycle", f"lanes x ui_per_cycle / 8 must be a power of two "
                                              f">= 4 bytes, not {bpc}")
        check_int("flight", self.flight, lo=0, hi=4096)
        if self.replay_depth is not None:
            check_int("replay_depth", self.replay_depth, lo=2, hi=512)
            if self.replay_depth & (self.replay_depth - 1):
                raise ConfigError("replay_depth", f"must be a power of two, not {self.replay_depth}")
        if self.credits is not None:
            check_int("credits", self.credits, lo=1, hi=256)
        if self.replay_timeout is not None:
            check_int("replay_timeout", self.replay_timeout, lo=4, hi=1 << 20)
        if self.resync_timeout is not None:
            check_int("resync_timeout", self.resync_timeout, lo=1, hi=1 << 20)
        check_int("max_fails", self.max_fails, lo=1, hi=1024)
        check_int("link_settle", self.link_settle, lo=0, hi=1 << 16)

    @property
    def bytes_per_cycle(self):
        return self.lanes * self.ui_per_cycle // 8

    @property
    def format(self):
        return golden.flit_format(self.flit)

    @property
    def payload_bytes(self):
        return self.format.payload_bytes

    @property
    def flit_cycles(self):
        """Beats (cycles) one flit occupies on the lanes."""
        return flit_beats(self.flit, self.bytes_per_cycle)

    @property
    def round_trip(self):
        return round_trip_cycles(self.flit_cycles, self.flight)

    @property
    def depth(self):
        return self.replay_depth or replay_depth_for(self.flit_cycles, self.flight)

    @property
    def stream_credits(self):
        """Receiver buffer per stream in flits: the credit loop is the Ack loop plus one flit."""
        return self.credits or (math.ceil(self.round_trip / self.flit_cycles) + 3)

    @property
    def timeout(self):
        return self.replay_timeout or 2 * self.round_trip

    @property
    def resync(self):
        return self.resync_timeout or 2 * self.round_trip

    @property
    def segments(self):
        return 2 if self.flit == "256lo" else 1

    def describe(self):
        return {"lanes": self.lanes, "flit": self.flit, "ui_per_cycle": self.ui_per_cycle,
                "bytes_per_cycle": self.bytes_per_cycle, "flit_cycles": self.flit_cycles,
                "payload_bytes": self.payload_bytes, "replay_depth": self.depth,
                "link_settle": self.link_settle,
                "credits": self.stream_credits, "replay_timeout": self.timeout,
                "round_trip_cycles": self.round_trip, "max_fails": self.max_fails}


class D2DAdapter(wiring.Component):
    """One die's D2D adapter (see the module docstring for the data path and latency).

    Parameters
    ----------
    config : D2DConfig

    Members
    -------
    s0_i, s1_i : In(stream.Signature(8 * payload_bytes))
        Protocol streams in: one flit payload per transfer.
    s0_o, s1_o : Out(stream.Signature({"data": 8 * payload_bytes, "last": 1}))
        Protocol streams out: released segments, ``last`` on a flit's final segment;
        back-pressure by ``ready`` (credits keep the sender from overrunning the buffer).
    tx : Out(stream.Signature(8 * bytes_per_cycle))
        Beats to the lane layer (``valid`` = the Valid lane).
    rx : In(stream.Signature(8 * bytes_per_cycle))
        Beats from the lane layer (always accepted).
    link_up : In(1)
        The PHY is ACTIVE. Flits are sent from ``link_settle`` clocks after it rises; when it falls
        the flit on the wire is dropped (retry replays it), a partly received flit is forgotten
        and the replay timer holds.
    retrain_req : Out(1)
        One-cycle request for link retraining (retry escalation).
    overflow : Out(1)
    <counter> : Out(32) for each name in ``COUNTERS``.
    """

    def __init__(self, config=None):
        if config is None:
            config = D2DConfig()
        if not isinstance(config, D2DConfig):
            raise TypeError(f"config must be a D2DConfig, not {config!r}")
        self._cfg = c = config
        pw = 8 * c.payload_bytes
        olayout = data.StructLayout({"data": pw, "last": 1})
        members = {
            "s0_i": In(stream.Signature(pw)),
            "s1_i": In(stream.Signature(pw)),
            "s0_o": Out(stream.Signature(olayout)),
            "s1_o": Out(stream.Signature(olayout)),
            "tx": Out(stream.Signature(8 * c.bytes_per_cycle)),
            "rx": In(stream.Signature(8 * c.bytes_per_cycle)),
            "link_up": In(1),
            "retrain_req": Out(1),
            "overflow": Out(1),
        }
        for name in COUNTERS:
            members[name] = Out(32)
        super().__init__(members)

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        if self._cfg.flit == "raw":
            return self._elaborate_raw()
        m = Module()
        c = self._cfg
        P = c.payload_bytes
        pw = 8 * P
        is68 = c.flit == "68"
        has_dlp = c.format.header_bytes >= 4
        ins = [self.s0_i, self.s1_i]
        outs = [self.s0_o, self.s1_o]

        m.submodules.ftx = ftx = FlitTx(c.flit, c.bytes_per_cycle)
        m.submodules.frx = frx = FlitRx(c.flit, c.bytes_per_cycle)
        meta = data.StructLayout({"payload": pw, "pid": 2, "cred": 2})
        m.submodules.rtx = rtx = RetryTx(meta.size, c.depth, timeout=c.timeout,
                                         max_fails=c.max_fails)
        m.submodules.rrx = rrx = RetryRx(lo=c.segments == 2)
        ctx_ = [CreditTx(c.stream_credits, c.resync) for _ in range(2)]
        crx = [CreditRx(c.stream_credits, pw, c.segments) for _ in range(2)]
        for k in range(2):
            m.submodules[f"ctx{k}"] = ctx_[k]
            m.submodules[f"crx{k}"] = crx[k]

        # ---- TX: arbiter -> retry -> flit -------------------------------------------------
        cur_cred = Signal(2)
        m.d.comb += cur_cred.eq(Cat(crx[0].ret_pending, crx[1].ret_pending))
        cand = [Signal(name=f"cand{k}") for k in range(2)]
        for k in range(2):
            m.d.comb += [cand[k].eq(ins[k].valid & ctx_[k].has_credit),
                         ctx_[k].want.eq(ins[k].valid)]
        rr = Signal()
        pick = Signal()       # 0 -> stream 0, 1 -> stream 1
        m.d.comb += pick.eq(Mux(cand[0] & cand[1], rr, cand[1]))
        new_meta = Signal(meta)
        m.d.comb += [
            new_meta.payload.eq(Mux(pick, ins[1].payload, ins[0].payload)),
            new_meta.pid.eq(Mux(pick, golden.PID_STREAM1, golden.PID_STREAM0)),
            new_meta.cred.eq(cur_cred),
            rtx.i.valid.eq(cand[0] | cand[1]),
            rtx.i.payload.eq(new_meta),
        ]
        for k in range(2):
            took = Signal(name=f"took{k}")
            m.d.comb += [ins[k].ready.eq(rtx.i.ready & (pick == k) & cand[k]),
                         took.eq(ins[k].valid & ins[k].ready),
                         ctx_[k].consume.eq(took)]
        with m.If(rtx.i.valid & rtx.i.ready):
            m.d.sync += rr.eq(~pick)

        # Ack state to send
        ack_code = Signal(2)
        m.d.comb += ack_code.eq(Mux(rrx.nak, golden.ACK_NAK, golden.ACK_ACK))
        sent_ack = Signal(golden.SEQ_BITS + 1)
        last_data = Signal()
        ack_dirty = Signal()
        m.d.comb += ack_dirty.eq(sent_ack != Cat(rrx.ack_num, rrx.nak))

        out_meta = Signal(meta)
        m.d.comb += out_meta.eq(rtx.o.payload.meta)
        send_data = Signal()
        if is68:
            m.d.comb += send_data.eq(rtx.o.valid & ~(ack_dirty & last_data))
        else:
            m.d.comb += send_data.eq(rtx.o.valid)
        fi = ftx.i.payload
        # Link down (training / retrain): drop the flit on the wire, forget a partly received
        # one, hold the replay timer; flit framing restarts with the next link-up.
        down = Signal()
        was_up = Signal()
        m.d.comb += down.eq(~self.link_up)
        m.d.sync += was_up.eq(self.link_up)
        m.d.comb += [ftx.abort.eq(down), frx.flush.eq(down), rtx.pause.eq(down)]
        send_en = self._settle(m)
        m.d.comb += [ftx.i.valid.eq(send_en),
                     rtx.o.ready.eq(ftx.i.ready & send_data & send_en)]
        with m.If(send_data):
            m.d.comb += [fi.pid.eq(out_meta.pid), fi.cred.eq(out_meta.cred),
                         fi.num.eq(rtx.o.payload.seq), fi.payload.eq(out_meta.payload)]
            if has_dlp:
                m.d.comb += [fi.ack.eq(ack_code), fi.acknum.eq(rrx.ack_num)]
        with m.Else():
            m.d.comb += [fi.pid.eq(golden.PID_CONTROL), fi.cred.eq(cur_cred),
                         fi.ack.eq(ack_code), fi.num.eq(rrx.ack_num)]
        fhs = Signal()
        m.d.comb += fhs.eq(ftx.i.valid & ftx.i.ready)
        fresh_cred = Signal()     # this flit's CRED bits are the current pending returns
        m.d.comb += fresh_cred.eq(fhs & (~send_data | ~rtx.o.payload.replay))
        for k in range(2):
            m.d.comb += crx[k].ret_sent.eq(fresh_cred & cur_cred[k])
        with m.If(fhs):
            m.d.sync += [self.tx_flits.eq(self.tx_flits + 1), last_data.eq(send_data)]
            with m.If(send_data):
                m.d.sync += self.tx_data_flits.eq(self.tx_data_flits + 1)
            if is68:
                with m.If(~send_data):
                    m.d.sync += sent_ack.eq(Cat(rrx.ack_num, rrx.nak))
            else:
                m.d.sync += sent_ack.eq(Cat(rrx.ack_num, rrx.nak))
        wiring.connect(m, ftx.o, wiring.flipped(self.tx))

        # ---- RX: flit -> retry -> buffers ---------------------------------------------------
        wiring.connect(m, wiring.flipped(self.rx), frx.i)
        sid1 = frx.pid == golden.PID_STREAM1
        is_data = frx.pid != golden.PID_CONTROL
        valid_sid = (frx.pid == golden.PID_STREAM0) | sid1
        m.d.comb += [
            rrx.ev_valid.eq(frx.ev_valid),
            rrx.ev_part.eq(frx.ev_part),
            rrx.ev_ok.eq(frx.ev_ok),
            rrx.ev_data.eq(is_data),
            rrx.ev_seq.eq(frx.num),
            rrx.room.eq(Mux(sid1, crx[1].room, crx[0].room) & valid_sid),
        ]
        # Ack/Nak from the peer
        if has_dlp:
            ack_num = Mux(is_data, frx.acknum, frx.num)
        else:
            ack_num = frx.num
        ack_present = (frx.ack == golden.ACK_ACK) | (frx.ack == golden.ACK_NAK)
        if is68:
            ack_present = ack_present & ~is_data
        m.d.comb += [
            rtx.ack_valid.eq(rrx.header_ok & ack_present),
            rtx.ack_num.eq(ack_num),
            rtx.ack_nak.eq(frx.ack == golden.ACK_NAK),
        ]
        lost = Signal()      # a credit return may have been lost (bad flit, or link went down)
        m.d.comb += lost.eq((frx.ev_valid & ~frx.ev_ok) | (was_up & down))
        for k in range(2):
            m.d.comb += [
                ctx_[k].ret.eq(rrx.new_flit & frx.cred[k]),
                ctx_[k].lost_hint.eq(lost),
                crx[k].w_data.eq(frx.seg),
                crx[k].w_last.eq(frx.ev_part if c.segments == 2 else 1),
                crx[k].w_en.eq(rrx.deliver & (sid1 if k else (frx.pid == golden.PID_STREAM0))),
            ]
            wiring.connect(m, crx[k].o, wiring.flipped(outs[k]))
        with m.If(frx.ev_valid & frx.ev_part):
            m.d.sync += self.rx_flits.eq(self.rx_flits + 1)

        # ---- status --------------------------------------------------------------------------
        m.d.comb += [
            self.retrain_req.eq(rtx.retrain),
            self.overflow.eq(crx[0].overflow | crx[1].overflow),
            self.rx_data_flits.eq(rrx.accepted),
            self.crc_errors.eq(rrx.crc_errors),
            self.replays.eq(rtx.replays),
            self.replayed_flits.eq(rtx.replayed_flits),
            self.retrains.eq(rtx.retrains),
            self.credit_stall_cycles.eq(ctx_[0].stall_cycles + ctx_[1].stall_cycles),
            self.refused.eq(rrx.refused),
            self.resyncs.eq(ctx_[0].resyncs + ctx_[1].resyncs),
            self.duplicates.eq(rrx.duplicates),
        ]
        return m

    def _settle(self, m):
        """``link_up`` delayed by ``link_settle`` clocks (falls at once)."""
        n = self._cfg.link_settle
        en = Signal()
        if n == 0:
            m.d.comb += en.eq(self.link_up)
            return en
        timer = Signal(range(n + 1))
        with m.If(~self.link_up):
            m.d.sync += [timer.eq(0), en.eq(0)]
        with m.Elif(timer == n):
            m.d.sync += en.eq(1)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        return en & self.link_up

    def _elaborate_raw(self):
        m = Module()
        c = self._cfg
        m.submodules.ftx = ftx = FlitTx("raw", c.bytes_per_cycle)
        m.submodules.frx = frx = FlitRx("raw", c.bytes_per_cycle)
        m.submodules.buf = buf = CreditRx(c.stream_credits, 8 * c.payload_bytes, 1)
        send_en = self._settle(m)
        m.d.comb += [
            ftx.abort.eq(~self.link_up),
            frx.flush.eq(~self.link_up),
            ftx.i.valid.eq(self.s0_i.valid & send_en),
            ftx.i.payload.payload.eq(self.s0_i.payload),
            self.s0_i.ready.eq(ftx.i.ready & send_en),
            self.s1_i.ready.eq(0),
        ]
        wiring.connect(m, ftx.o, wiring.flipped(self.tx))
        wiring.connect(m, wiring.flipped(self.rx), frx.i)
        m.d.comb += [buf.w_data.eq(frx.seg), buf.w_last.eq(1),
                     buf.w_en.eq(frx.ev_valid & buf.room), buf.ret_sent.eq(0)]
        wiring.connect(m, buf.o, wiring.flipped(self.s0_o))
        m.d.comb += self.s1_o.valid.eq(0)
        with m.If(frx.ev_valid & ~buf.room):
            m.d.sync += self.overflow.eq(1)
        with m.If(ftx.i.valid & ftx.i.ready):
            m.d.sync += [self.tx_flits.eq(self.tx_flits + 1),
                         self.tx_data_flits.eq(self.tx_data_flits + 1)]
        with m.If(frx.ev_valid):
            m.d.sync += [self.rx_flits.eq(self.rx_flits + 1),
                         self.rx_data_flits.eq(self.rx_data_flits + 1)]
        return m
