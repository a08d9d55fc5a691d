"""Link training (LTSM) of the D2D PHY, and :class:`D2DPhy`, one die's complete PHY.

States (d2d.md §1.7, [V] UCIe 1.1 p.109-132; simplified, digital only)::

    RESET -> SBINIT -> MBINIT_PARAM -> MBINIT_REVERSAL -> MBINIT_REPAIR -> MBTRAIN -> LINKINIT -> ACTIVE
                                            ^                                  |                    |
                                            +------ RETRAIN <------------------(fail, retried)------+
    any state -> TRAINERROR (timeout, parameter mismatch, unrepairable lanes, partner's TRAINERROR,
                             repeated MBTRAIN failure)

- ``start`` is a level: low forces RESET (and is the only way out of TRAINERROR); high lets the
  link train.
- Every training state ends with the same sideband handshake (sideband.py message set): once its
  local work is done, a die sends the state's message (with its result in ``data``) and resends it
  every ``resend`` clocks; ``ack`` says it has seen the partner's message of that state. A die leaves
  the state when it has seen the partner's message with ``ack`` set and its own message with ``ack``
  set has left the line, so both dies leave every state, in order, with each other's results. If
  that last message is lost on the sideband, the partner keeps resending; a die answers a resend
  of the state it has just left with an Ack (and the same data), so a lost frame costs time only.
- SBINIT: sideband up (the clock-pattern detection of the spec is abstracted into the framing).
- MBINIT_PARAM: both sides send their parameters (lanes, spares, scrambler, degrade); a mismatch is
  a TRAINERROR.
- MBINIT_REVERSAL: the TX sends the per-lane ID pattern (slot k: its 8-bit ID ``k``, alternating
  with the complement every clock, on every byte of the lane word, Valid lane low; d2d.md §1.7
  uses per-lane IDs for reversal). The RX checks each lane for 16 consecutive alternating
  clocks of its own ID (straight) or of the mirrored lane's ID (reversed), from the first lane that
  passes on for 32 clocks. More reversed than straight lanes -> it reports "reversed" and the
  partner reverses its TX (reversal is done in the TX only).
- MBINIT_REPAIR: the ID pattern again, now through the reversal fix. Lanes that do not pass are
  broken; :func:`diestack.sim.d2d.golden.plan_repair`'s rule (one clock per data lane, up to three
  walks: full width, lower half, upper half) gives the spare map and width. The RX applies it, the
  message hands it to the partner's TX. Unrepairable (with degrade exhausted) -> TRAINERROR.
- MBTRAIN: a main-band data test through the configured lane layer (repair, width, scrambler):
  :data:`MBTRAIN_BEATS` known beats (beat k, byte i = ``(0x35*k mod 256) ^ c_i`` with
  ``c_i = (0x9D*i + 0x5B) mod 256``). A failure on either side retries from MBINIT_REVERSAL, up to
  ``attempts`` times, then TRAINERROR.
- LINKINIT: a last handshake; then ACTIVE, where the adapter's beats use the lanes.
- ACTIVE -> RETRAIN on ``retrain_req`` (the adapter's retry escalation) or the partner's RETRAIN
  message; after the RETRAIN handshake both dies clear reversal/repair/width and re-run the lane
  tests, so a lane that broke while ACTIVE is repaired.
- A state that does not finish within ``timeout`` clocks goes to TRAINERROR.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from .lanes import LaneConfig, LaneRx, LaneTx, spare_layout
from .sideband import FRAME_CLOCKS, MESSAGE, Op, SidebandRx, SidebandTx

__all__ = ["State", "LinkTraining", "D2DPhy", "MBTRAIN_BEATS", "mbtrain_beat", "lane_id_word", "param_word"]

MBTRAIN_BEATS = 16
PASS_RUN = 16        # consecutive alternating ID words for a lane to pass (d2d.md §1.7 REPAIRMB: 16)
WINDOW = 32          # clocks of lane testing after the first lane passes
MBTRAIN_DELAY = 16   # clocks between entering MBTRAIN and the first test beat


class State(enum.Enum, shape=4):
    RESET = 0
    SBINIT = 1
    MBINIT_PARAM = 2
    MBINIT_REVERSAL = 3
    MBINIT_REPAIR = 4
    MBTRAIN = 5
    LINKINIT = 6
    ACTIVE = 7
    RETRAIN = 8
    TRAINERROR = 9


_OPS = {
    State.SBINIT: Op.SBINIT_DONE, State.MBINIT_PARAM: Op.PARAM, State.MBINIT_REVERSAL: Op.REVERSAL,
    State.MBINIT_REPAIR: Op.REPAIR, State.MBTRAIN: Op.MBTRAIN, State.LINKINIT: Op.LINKINIT_DONE,
    State.ACTIVE: Op.RETRAIN, State.RETRAIN: Op.RETRAIN, State.TRAINERROR: Op.TRAINERROR,
}


def mbtrain_beat(k, bytes_per_cycle):
    """MBTRAIN test beat k as an integer (byte i = (0x35*k mod 256) ^ ((0x9D*i + 0x5B) mod 256))."""
    ctr = (0x35 * k) & 0xFF
    return int.from_bytes(bytes(ctr ^ ((0x9D * i + 0x5B) & 0xFF) for i in range(bytes_per_cycle)), "little")


def lane_id_word(cfg, phase):
    """The lane-ID training pattern for all slots (slot words before reversal) as an integer."""
    out = 0
    for k in range(cfg.slots):
        byte = k ^ (0xFF if phase else 0)
        word = int.from_bytes(bytes([byte]) * (cfg.ui // 8), "little")
        out |= word << (k * cfg.ui)
    return out


def param_word(cfg, scrambler, allow_degrade):
    """The PARAM message data for a configuration."""
    code = {16: 0, 32: 1, 64: 2}[cfg.lanes]
    return code | (cfg.spares_per_group << 2) | (int(scrambler) << 5) | (int(allow_degrade) << 6)


class LinkTraining(wiring.Component):
    """The training state machine of one die (pure control; :class:`D2DPhy` wires it up).

    Parameters
    ----------
    lanes, bytes_per_cycle, spares_per_group : lane geometry (:class:`~.lanes.LaneConfig`).
    scrambler : bool
        Scramble the main band after MBINIT (both dies must agree; PARAM checks it).
    allow_degrade : bool
        Allow width degrade to half width when spares cannot repair the link.
    timeout : int
        Clocks a training state may take before TRAINERROR.
    resend : int
        Clocks between resends of a state's sideband message (more than a sideband frame).
    attempts : int
        MBTRAIN failures tolerated (each retrains from MBINIT_REVERSAL) before TRAINERROR.

    Members
    -------
    start : In(1), retrain_req : In(1)
    state : Out(State), link_up : Out(1)
    retrains : Out(16)
        ACTIVE -> RETRAIN transitions.
    rx_reversed : Out(1)
        This die's RX saw the partner's lanes reversed (so the partner reverses its TX).
    sb_tx_msg, sb_tx_valid, sb_tx_ready, sb_rx_msg, sb_rx_valid : sideband message ports.
    tx_reverse, tx_repair, tx_width, tx_override, tx_override_lanes, hold, scramble : Out
        Lane TX controls (``hold`` and ``scramble`` also go to the lane RX).
    rx_repair, rx_width : Out
        Lane RX controls.
    rx_raw : In(P * U)
        The lane RX's registered raw lane words.
    tst_data : Out(8W), tst_valid : Out(1), tst_ready : In(1)
        MBTRAIN test beats into the lane TX.
    rx_data : In(8W), rx_valid : In(1)
        Beats out of the lane RX (checked during MBTRAIN).
    """

    def __init__(self, lanes=16, bytes_per_cycle=16, spares_per_group=2, *, scrambler=False,
                 allow_degrade=True, timeout=8192, resend=64, attempts=4):
        self.cfg = c = LaneConfig(lanes, bytes_per_cycle, spares_per_group)
        if not isinstance(timeout, int) or timeout < 512:
            raise TypeError(f"timeout must be an integer >= 512 clocks, not {timeout!r}")
        if not isinstance(resend, int) or resend < FRAME_CLOCKS + 4:
            raise TypeError(f"resend must be an integer >= {FRAME_CLOCKS + 4} clocks (a sideband frame), "
                            f"not {resend!r}")
        if not isinstance(attempts, int) or attempts < 1:
            raise TypeError(f"attempts must be a positive integer, not {attempts!r}")
        self._scrambler = bool(scrambler)
        self._allow_degrade = bool(allow_degrade)
        self._timeout = timeout
        self._resend = resend
        self._attempts = attempts
        repair = data.ArrayLayout(spare_layout(c.group_lanes), c.spares)
        super().__init__({
            "start": In(1),
            "retrain_req": In(1),
            "state": Out(State),
            "link_up": Out(1),
            "retrains": Out(16),
            "rx_reversed": Out(1),
            "sb_tx_msg": Out(MESSAGE),
            "sb_tx_valid": Out(1),
            "sb_tx_ready": In(1),
            "sb_rx_msg": In(MESSAGE),
            "sb_rx_valid": In(1),
            "tx_reverse": Out(1),
            "tx_repair": Out(repair),
            "tx_width": Out(2),
            "tx_override": Out(1),
            "tx_override_lanes": Out(c.slots * c.ui),
            "hold": Out(1, init=1),
            "scramble": Out(1),
            "rx_repair": Out(repair),
            "rx_width": Out(2),
            "rx_raw": In(c.slots * c.ui),
            "tst_data": Out(8 * c.bytes_per_cycle),
            "tst_valid": Out(1),
            "tst_ready": In(1),
            "rx_data": In(8 * c.bytes_per_cycle),
            "rx_valid": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.cfg
        N, P, U, W = c.lanes, c.slots, c.ui, c.bytes_per_cycle
        S, G, spg = c.spares, c.group_lanes, c.spares_per_group
        state = self.state
        param = param_word(c, self._scrambler, self._allow_degrade)

        # ---- generic per-state sideband handshake ---------------------------------------------
        cur_op = Signal(4)
        with m.Switch(state):
            for st, op in _OPS.items():
                with m.Case(st):
                    m.d.comb += cur_op.eq(op)
        seen = Signal()
        acked = Signal()
        ack_inflight = Signal()
        sent_ack = Signal()
        partner = Signal(27)
        resend_timer = Signal(range(self._resend + 1))
        state_timer = Signal(range(self._timeout + 1))
        local_ready = Signal()
        local_data = Signal(27)
        rx_match = Signal()
        m.d.comb += rx_match.eq(self.sb_rx_valid & (self.sb_rx_msg.opcode == cur_op))
        with m.If(rx_match):
            m.d.sync += [seen.eq(1), partner.eq(self.sb_rx_msg.data)]
            with m.If(self.sb_rx_msg.ack):
                m.d.sync += acked.eq(1)
        handshake = (state != State.RESET)
        # A die that has left a state still answers the partner's resends of that state's message
        # with an Ack (its last message of that state may have been lost on the sideband).
        prev_op = Signal(4)
        prev_data = Signal(27)
        respond = Signal()
        send = Signal()
        send_resp = Signal()
        m.d.comb += [
            send_resp.eq(respond & self.sb_tx_ready),
            send.eq(handshake & local_ready & self.sb_tx_ready & ~respond
                    & ((resend_timer == 0) | (seen & ~ack_inflight & ~sent_ack))),
            self.sb_tx_valid.eq(send | send_resp),
            self.sb_tx_msg.opcode.eq(Mux(respond, prev_op, cur_op)),
            self.sb_tx_msg.ack.eq(respond | seen),
            self.sb_tx_msg.data.eq(Mux(respond, prev_data, local_data)),
        ]
        with m.If(send_resp):
            m.d.sync += respond.eq(0)
        with m.If(self.sb_rx_valid & (self.sb_rx_msg.opcode == prev_op) & (prev_op != cur_op)
                  & (prev_op != Op.NOP)):
            m.d.sync += respond.eq(1)
        with m.If(send):
            m.d.sync += resend_timer.eq(self._resend)
            with m.If(seen):
                m.d.sync += ack_inflight.eq(1)
        with m.Elif(resend_timer != 0):
            m.d.sync += resend_timer.eq(resend_timer - 1)
        with m.If(ack_inflight & self.sb_tx_ready & ~send):
            m.d.sync += sent_ack.eq(1)
        done = Signal()
        m.d.comb += done.eq(local_ready & acked & sent_ack)
        m.d.sync += state_timer.eq(Mux(state_timer == self._timeout, state_timer, state_timer + 1))

        # state-change helper: clears the handshake and the per-state work
        clear = Signal()         # set (comb) on any transition except ACTIVE -> RETRAIN

        def goto(st, keep=False):
            m.d.sync += [state.eq(st), state_timer.eq(0), prev_op.eq(cur_op), prev_data.eq(local_data),
                         respond.eq(0)]
            if not keep:
                m.d.comb += clear.eq(1)

        with m.If(clear):
            m.d.sync += [seen.eq(0), acked.eq(0), ack_inflight.eq(0), sent_ack.eq(0),
                         resend_timer.eq(0)]

        # ---- lane-ID pattern generator and checker -------------------------------------------
        pat_phase = Signal()
        m.d.sync += pat_phase.eq(~pat_phase)
        m.d.comb += self.tx_override_lanes.eq(Mux(pat_phase, lane_id_word(c, 1), lane_id_word(c, 0)))
        test_states = (state == State.MBINIT_REVERSAL) | (state == State.MBINIT_REPAIR)
        m.d.comb += self.tx_override.eq(test_states)

        pass_s = Signal(P)
        pass_r = Signal(P)
        win = Signal(range(WINDOW + 1))
        measured = Signal()
        for k in range(P):
            w = self.rx_raw[k * U:(k + 1) * U]
            for kind, ident, passed in (("s", k, pass_s), ("r", P - 1 - k, pass_r)):
                rep = lambda b: int.from_bytes(bytes([b]) * (U // 8), "little")
                is_e = w == rep(ident)
                is_c = w == rep(ident ^ 0xFF)
                last = Signal(2, name=f"last_{kind}{k}")
                run = Signal(range(PASS_RUN + 1), name=f"run_{kind}{k}")
                ok = (is_e & (last == 2)) | (is_c & (last == 1))
                m.d.sync += last.eq(Mux(is_e, 1, Mux(is_c, 2, 0)))
                m.d.sync += run.eq(Mux(ok, Mux(run == PASS_RUN, run, run + 1), 0))
                with m.If(ok & (run == PASS_RUN - 1)):
                    m.d.sync += passed[k].eq(1)
                with m.If(clear):
                    m.d.sync += [run.eq(0), passed[k].eq(0)]
        any_pass = (pass_s | pass_r).any()
        with m.If(clear):
            m.d.sync += [win.eq(0), measured.eq(0)]
        with m.Elif(test_states & any_pass & ~measured):
            m.d.sync += win.eq(win + 1)
            with m.If(win == WINDOW - 1):
                m.d.sync += measured.eq(1)

        def popcount(v):
            return sum(v[i] for i in range(len(v)))
        reversed_now = Signal()
        m.d.comb += reversed_now.eq(popcount(pass_r) > popcount(pass_s))

        # ---- repair walker (golden.plan_repair) ----------------------------------------------
        repair_layout = data.ArrayLayout(spare_layout(G), S)
        w_idx = Signal(range(N + 1))
        w_hi = Signal(range(N + 1))
        w_try = Signal(2)        # 0 full, 1 lower half, 2 upper half
        w_busy = Signal()
        w_done = Signal()
        w_fail = Signal()        # unrepairable
        w_entries = Signal(repair_layout)
        used = Signal(max(S, 1))
        res_width = Signal(2)
        with m.If(clear):
            m.d.sync += [w_busy.eq(0), w_done.eq(0), w_fail.eq(0)]
        with m.Elif((state == State.MBINIT_REPAIR) & measured & ~w_busy & ~w_done):
            m.d.sync += [w_busy.eq(1), w_idx.eq(0), w_hi.eq(N), w_try.eq(0), used.eq(0),
                         w_entries.eq(0)]
        with m.Elif(w_busy):
            lane_ok = Array(pass_s[i] for i in range(N))[w_idx]
            at_end = w_idx == w_hi
            group = w_idx // G if c.groups > 1 else Const(0)
            found = Signal()
            stuck_walk = Signal()
            with m.If(at_end):
                m.d.sync += [w_busy.eq(0), w_done.eq(1), res_width.eq(w_try)]
            with m.Elif(lane_ok):
                m.d.sync += w_idx.eq(w_idx + 1)
            with m.Else():
                # first working, unused spare of this lane's group
                chosen = Signal(range(max(S, 1) + 1))
                m.d.comb += chosen.eq(S)
                for k in reversed(range(S)):
                    g = k // spg
                    with m.If((group == g) & pass_s[N + k] & ~used[k]):
                        m.d.comb += chosen.eq(k)
                m.d.comb += found.eq(chosen != S)
                with m.If(found):
                    m.d.sync += w_idx.eq(w_idx + 1)
                    for k in range(S):
                        with m.If(chosen == k):
                            m.d.sync += [used[k].eq(1), w_entries[k].en.eq(1),
                                         w_entries[k].lane.eq(w_idx % G)]
                with m.Else():
                    m.d.comb += stuck_walk.eq(1)
            with m.If(stuck_walk):
                m.d.sync += [used.eq(0), w_entries.eq(0)]
                if self._allow_degrade:
                    with m.If(w_try == 0):
                        m.d.sync += [w_try.eq(1), w_idx.eq(0), w_hi.eq(N // 2)]
                    with m.Elif(w_try == 1):
                        m.d.sync += [w_try.eq(2), w_idx.eq(N // 2), w_hi.eq(N)]
                    with m.Else():
                        m.d.sync += [w_busy.eq(0), w_done.eq(1), w_fail.eq(1)]
                else:
                    m.d.sync += [w_busy.eq(0), w_done.eq(1), w_fail.eq(1)]

        repair_word = Signal(27)
        fields = [res_width, w_fail]
        for k in range(S):
            lane5 = Signal(5, name=f"repair_lane{k}")
            m.d.comb += lane5.eq(w_entries[k].lane)
            fields += [w_entries[k].en, lane5]
        m.d.comb += repair_word.eq(Cat(*fields))

        # ---- MBTRAIN data test ----------------------------------------------------------------
        consts = [(0x9D * i + 0x5B) & 0xFF for i in range(W)]
        tx_ctr = Signal(8)
        rx_ctr = Signal(8)
        tx_sent = Signal(range(MBTRAIN_BEATS + 1))
        rx_got = Signal(range(MBTRAIN_BEATS + 1))
        rx_bad = Signal()
        in_mbtrain = state == State.MBTRAIN
        m.d.comb += [
            self.tst_data.eq(Cat(*[tx_ctr ^ cst for cst in consts])),
            self.tst_valid.eq(in_mbtrain & (state_timer >= MBTRAIN_DELAY) & (tx_sent != MBTRAIN_BEATS)),
        ]
        with m.If(clear):
            m.d.sync += [tx_ctr.eq(0), rx_ctr.eq(0), tx_sent.eq(0), rx_got.eq(0), rx_bad.eq(0)]
        with m.Else():
            with m.If(self.tst_valid & self.tst_ready):
                m.d.sync += [tx_ctr.eq(tx_ctr + 0x35), tx_sent.eq(tx_sent + 1)]
            with m.If(in_mbtrain & self.rx_valid & (rx_got != MBTRAIN_BEATS)):
                m.d.sync += [rx_ctr.eq(rx_ctr + 0x35), rx_got.eq(rx_got + 1)]
                with m.If(self.rx_data != Cat(*[rx_ctr ^ cst for cst in consts])):
                    m.d.sync += rx_bad.eq(1)
        mb_wait = min(self._timeout // 2, 1024)
        mb_pass = (rx_got == MBTRAIN_BEATS) & ~rx_bad

        # ---- lane configuration registers -----------------------------------------------------
        attempts = Signal(range(self._attempts + 1))
        m.d.comb += [
            self.hold.eq(~((state == State.MBTRAIN) | (state == State.LINKINIT) | (state == State.ACTIVE))),
            self.scramble.eq(self._scrambler),
            self.link_up.eq(state == State.ACTIVE),
        ]

        def reset_lane_config():
            m.d.sync += [self.tx_reverse.eq(0), self.tx_repair.eq(0), self.tx_width.eq(0),
                         self.rx_repair.eq(0), self.rx_width.eq(0), self.rx_reversed.eq(0)]

        # ---- state machine --------------------------------------------------------------------
        training = ~((state == State.RESET) | (state == State.ACTIVE) | (state == State.TRAINERROR))
        partner_error = self.sb_rx_valid & (self.sb_rx_msg.opcode == Op.TRAINERROR)
        with m.If(~self.start):
            with m.If(state != State.RESET):
                goto(State.RESET)
                reset_lane_config()
                m.d.sync += attempts.eq(0)
        with m.Elif(((state_timer == self._timeout) & training)
                    | (partner_error & (state != State.TRAINERROR))):
            goto(State.TRAINERROR)
        with m.Else():
            with m.Switch(state):
                with m.Case(State.RESET):
                    goto(State.SBINIT)
                with m.Case(State.SBINIT):
                    m.d.comb += local_ready.eq(1)
                    with m.If(done):
                        goto(State.MBINIT_PARAM)
                with m.Case(State.MBINIT_PARAM):
                    m.d.comb += [local_ready.eq(1), local_data.eq(param)]
                    with m.If(done):
                        with m.If(partner == param):
                            goto(State.MBINIT_REVERSAL)
                        with m.Else():
                            goto(State.TRAINERROR)
                with m.Case(State.MBINIT_REVERSAL):
                    m.d.comb += [local_ready.eq(measured), local_data.eq(self.rx_reversed)]
                    with m.If(win == WINDOW - 1):
                        m.d.sync += self.rx_reversed.eq(reversed_now)
                    with m.If(done):
                        m.d.sync += self.tx_reverse.eq(partner[0])
                        goto(State.MBINIT_REPAIR)
                with m.Case(State.MBINIT_REPAIR):
                    m.d.comb += [local_ready.eq(w_done), local_data.eq(repair_word)]
                    with m.If(w_busy & (w_idx == w_hi)):
                        m.d.sync += [self.rx_repair.eq(w_entries), self.rx_width.eq(w_try)]
                    with m.If(done):
                        with m.If(w_fail | partner[2]):
                            goto(State.TRAINERROR)
                        with m.Else():
                            m.d.sync += self.tx_width.eq(partner[0:2])
                            for k in range(S):
                                m.d.sync += [self.tx_repair[k].en.eq(partner[3 + 6 * k]),
                                             self.tx_repair[k].lane.eq(partner[4 + 6 * k:9 + 6 * k])]
                            goto(State.MBTRAIN)
                with m.Case(State.MBTRAIN):
                    m.d.comb += [
                        local_ready.eq((tx_sent == MBTRAIN_BEATS)
                                       & ((rx_got == MBTRAIN_BEATS) | (state_timer >= mb_wait))),
                        local_data.eq(mb_pass),
                    ]
                    with m.If(done):
                        with m.If(mb_pass & partner[0]):
                            goto(State.LINKINIT)
                        with m.Elif(attempts == self._attempts - 1):
                            goto(State.TRAINERROR)
                        with m.Else():
                            m.d.sync += attempts.eq(attempts + 1)
                            reset_lane_config()
                            goto(State.MBINIT_REVERSAL)
                with m.Case(State.LINKINIT):
                    m.d.comb += local_ready.eq(1)
                    with m.If(done):
                        m.d.sync += attempts.eq(0)
                        goto(State.ACTIVE)
                with m.Case(State.ACTIVE):
                    with m.If(self.retrain_req | rx_match):
                        m.d.sync += self.retrains.eq(self.retrains + 1)
                        goto(State.RETRAIN, keep=True)
                with m.Case(State.RETRAIN):
                    m.d.comb += local_ready.eq(1)
                    with m.If(done):
                        reset_lane_config()
                        goto(State.MBINIT_REVERSAL)
                with m.Case(State.TRAINERROR):
                    m.d.comb += local_ready.eq(1)
        return m


class D2DPhy(wiring.Component):
    """One die's D2D PHY: lane TX/RX, sideband TX/RX and link training, composed.

    Parameters are those of :class:`~.lanes.LaneTx` and :class:`LinkTraining`.

    Members
    -------
    tx_data : In(8W), tx_valid : In(1), tx_ready : Out(1)
        Adapter beats to send; ``tx_ready`` is low unless ``link_up`` (and on the first clock of
        each beat when degraded).
    rx_data : Out(8W), rx_valid : Out(1)
        Received beats while ``link_up``; no back-pressure.
    lanes_tx : Out(P * U), lanes_tx_valid : Out(1), sb_tx : Out(2)
        To the channel (die-to-die bumps); ``sb_tx`` is the sideband (data, clock running).
    lanes_rx : In(P * U), lanes_rx_valid : In(1), sb_rx : In(2)
        From the channel.
    start, retrain_req : In(1)
    state : Out(State), link_up : Out(1), retrains : Out(16), sb_check_errors : Out(16)
    tx_reverse, rx_reversed, tx_width, rx_width, tx_repair, rx_repair : Out
        The training results applied to the lanes.

    Latency (ACTIVE): 1 clock lane TX + channel + 1 clock lane RX.
    """

    def __init__(self, lanes=16, bytes_per_cycle=16, spares_per_group=2, *, scrambler=False,
                 allow_degrade=True, timeout=8192, resend=64, attempts=4):
        self._args = (lanes, bytes_per_cycle, spares_per_group)
        self._kw = dict(scrambler=scrambler, allow_degrade=allow_degrade, timeout=timeout,
                        resend=resend, attempts=attempts)
        self.cfg = c = LaneConfig(lanes, bytes_per_cycle, spares_per_group)
        repair = data.ArrayLayout(spare_layout(c.group_lanes), c.spares)
        super().__init__({
            "tx_data": In(8 * c.bytes_per_cycle),
            "tx_valid": In(1),
            "tx_ready": Out(1),
            "rx_data": Out(8 * c.bytes_per_cycle),
            "rx_valid": Out(1),
            "lanes_tx": Out(c.slots * c.ui),
            "lanes_tx_valid": Out(1),
            "sb_tx": Out(2),
            "lanes_rx": In(c.slots * c.ui),
            "lanes_rx_valid": In(1),
            "sb_rx": In(2),
            "start": In(1),
            "retrain_req": In(1),
            "state": Out(State),
            "link_up": Out(1),
            "retrains": Out(16),
            "sb_check_errors": Out(16),
            "tx_reverse": Out(1),
            "rx_reversed": Out(1),
            "tx_width": Out(2),
            "rx_width": Out(2),
            "tx_repair": Out(repair),
            "rx_repair": Out(repair),
        })

    def elaborate(self, platform):
        m = Module()
        scr = self._kw["scrambler"]
        m.submodules.ltx = ltx = LaneTx(*self._args, scrambler=scr)
        m.submodules.lrx = lrx = LaneRx(*self._args, scrambler=scr)
        m.submodules.sbtx = sbtx = SidebandTx()
        m.submodules.sbrx = sbrx = SidebandRx()
        m.submodules.train = tr = LinkTraining(*self._args, **self._kw)
        up = tr.link_up
        m.d.comb += [
            # adapter <-> lanes, training's test beats while not up
            ltx.data.eq(Mux(up, self.tx_data, tr.tst_data)),
            ltx.valid.eq(Mux(up, self.tx_valid, tr.tst_valid)),
            self.tx_ready.eq(up & ltx.ready),
            tr.tst_ready.eq(~up & ltx.ready),
            self.rx_data.eq(lrx.data),
            self.rx_valid.eq(up & lrx.valid),
            tr.rx_data.eq(lrx.data),
            tr.rx_valid.eq(lrx.valid),
            tr.rx_raw.eq(lrx.raw),
            # lane controls
            ltx.reverse.eq(tr.tx_reverse),
            ltx.repair.eq(tr.tx_repair),
            ltx.width.eq(tr.tx_width),
            ltx.override.eq(tr.tx_override),
            ltx.override_lanes.eq(tr.tx_override_lanes),
            ltx.hold.eq(tr.hold),
            ltx.scramble.eq(tr.scramble),
            lrx.repair.eq(tr.rx_repair),
            lrx.width.eq(tr.rx_width),
            lrx.hold.eq(tr.hold),
            lrx.scramble.eq(tr.scramble),
            # pins
            self.lanes_tx.eq(ltx.lanes),
            self.lanes_tx_valid.eq(ltx.lanes_valid),
            lrx.lanes.eq(self.lanes_rx),
            lrx.lanes_valid.eq(self.lanes_rx_valid),
            # sideband
            sbtx.msg.eq(tr.sb_tx_msg),
            sbtx.valid.eq(tr.sb_tx_valid),
            tr.sb_tx_ready.eq(sbtx.ready),
            self.sb_tx.eq(sbtx.line),
            sbrx.line.eq(self.sb_rx),
            tr.sb_rx_msg.eq(sbrx.msg),
            tr.sb_rx_valid.eq(sbrx.valid),
            # control / status
            tr.start.eq(self.start),
            tr.retrain_req.eq(self.retrain_req),
            self.state.eq(tr.state),
            self.link_up.eq(up),
            self.retrains.eq(tr.retrains),
            self.sb_check_errors.eq(sbrx.check_errors),
            self.tx_reverse.eq(tr.tx_reverse),
            self.rx_reversed.eq(tr.rx_reversed),
            self.tx_width.eq(tr.tx_width),
            self.rx_width.eq(tr.rx_width),
            self.tx_repair.eq(tr.tx_repair),
            self.rx_repair.eq(tr.rx_repair),
        ]
        return m
