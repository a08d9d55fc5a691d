"""cocotb end-to-end transfer: die A -> channel model -> die B on the ``d2d_pair`` top.

Job folder (env ``DIESTACK_JOB``):

- ``job.json``: ``lanes``, ``flit``, ``ui_per_cycle``, ``payload_bytes``, ``flit_cycles``,
  ``flight`` (channel latency, cycles), ``ber``, ``burst_every``, ``burst_len``, ``stuck_lane``
  (-1: none), ``stuck_value``, ``reverse``, ``seed``, ``backpressure`` (probability that die B's
  consumer stalls for a window of ``BP_WINDOW`` cycles), ``max_cycles``, ``stuck_after``
  (the stuck lane breaks at this data-phase cycle; 0: from the start).
- ``input.bin``: the bytes to send.

Protocol framing (ours, above the adapter): the byte stream is an 8-byte little-endian length
followed by the data, zero-padded to whole flit payloads; payload ``i`` goes on stream ``i % 2``,
so both protocol streams are multiplexed over the link; die B reassembles by taking payloads
alternately from its two streams and truncating to the length.

Outputs: ``output.bin`` (what die B released) and ``metrics.json``: ``bytes_in``, ``bytes_out``,
``flits`` (data flits accepted by die B), ``tx_flits`` (all flits die A sent), ``cycles`` (first
TX accept to last RX release), ``goodput`` (payload bits released / raw lane bits of those
cycles, ``lanes * ui_per_cycle * cycles``), ``crc_errors``, ``replays``, ``retrains``,
``latency_min/avg/max`` (cycles from a payload's TX accept to the release of its last segment),
``latency_first_*`` (to its first segment; differs for 256lo), ``pipeline_latency_*`` (latency
minus channel flight and flit serialization), ``rtl_latency`` (the same latency from the pair
top's RTL counters, a cross-check), counters of both dies, ``completed``, ``overflow``,
``scoreboard`` ("ok" or the golden Go-Back-N scoreboard's complaint), ``lane_repair``.

Link bring-up is the RTL's: both dies' ``start`` go high after reset and the PHYs train over
the channel (sideband included); the transfer starts once both are ACTIVE. A lane that breaks
mid-transfer (``stuck_after``) is found by the PHY's retrain, which the adapter's retry escalation
requests. ``lanes_bringup`` / ``lanes_final`` report the lane configuration training chose.

Every DUT input is driven from time 0. Handshakes are decided at the falling edge: inputs are set,
the design settles (ReadOnly) and valid & ready is what the next rising edge samples.
"""

import dataclasses
import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from .channel import Channel, ChannelConfig
from .golden import GoBackNScoreboard, ScoreboardError

BP_WINDOW = 128    # back-pressure: die B's consumer stalls whole windows of this many cycles

COUNTERS = ("tx_flits", "tx_data_flits", "rx_flits", "rx_data_flits", "crc_errors", "replays",
            "replayed_flits", "retrains", "credit_stall_cycles", "refused", "resyncs",
            "duplicates")


def frame(data, payload_bytes):
    """Length-prefixed payload list (see module docstring)."""
    body = len(data).to_bytes(8, "little") + bytes(data)
    pad = (-len(body)) % payload_bytes
    body += bytes(pad)
    return [body[i:i + payload_bytes] for i in range(0, len(body), payload_bytes)]


def unframe(payloads):
    body = b"".join(payloads)
    if len(body) < 8:
        return b""
    n = int.from_bytes(body[:8], "little")
    return body[8:8 + n]


def _finish(board):
    try:
        board.finish()
        return "ok"
    except ScoreboardError as e:
        return str(e)


def _write_json(path, obj):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


async def _carry(dut, links):
    """Move lane words, the Valid lane and the sideband through the channel models, both
    directions, each cycle.

    Same timing as ``channel.connect`` (step at the falling edge, the far RX captures at the next
    rising edge); one coroutine for both directions.
    """
    ports = [(ch, getattr(dut, f"{tx}_lanes_tx"), getattr(dut, f"{tx}_lanes_tx_valid"),
              getattr(dut, f"{tx}_sb_tx"), getattr(dut, f"{rx}_lanes_rx"),
              getattr(dut, f"{rx}_lanes_rx_valid"), getattr(dut, f"{rx}_sb_rx"))
             for ch, tx, rx in links]
    for _, _, _, _, rl, rv, rs in ports:
        rl.value = 0
        rv.value = 0
        rs.value = 0
    while True:
        await FallingEdge(dut.clk)
        for ch, tl, tv, ts, rl, rv, rs in ports:
            rl.value = ch.step(tl.value.to_unsigned())
            rv.value = ch.step_valid(int(tv.value))
            rs.value = ch.step_sideband(ts.value.to_unsigned())


def _lane_summary(dut, lc):
    """The lane configuration training chose (read from the RTL) for the report."""
    G = lc["group"]
    lane_bits = max(1, (G - 1).bit_length())
    out = {}
    for die in "ab":
        rep = getattr(dut, f"{die}_tx_repair").value.to_unsigned()
        entries = []
        for k in range(lc["lanes"] // G * lc["spares"]):
            e = (rep >> (k * (1 + lane_bits))) & ((1 << (1 + lane_bits)) - 1)
            if e & 1:
                g = k // lc["spares"]
                entries.append([g * G + (e >> 1), lc["lanes"] + k])   # [lane, spare slot]
        out[die] = {"reversed": int(getattr(dut, f"{die}_tx_reverse").value),
                    "width": getattr(dut, f"{die}_tx_width").value.to_unsigned(),
                    "repaired": entries,
                    "phy_retrains": getattr(dut, f"{die}_phy_retrains").value.to_unsigned(),
                    "state": getattr(dut, f"{die}_state").value.to_unsigned()}
    return out


@cocotb.test()
async def transfer(dut):
    job = Path(os.environ["DIESTACK_JOB"])
    cfg = json.loads((job / "job.json").read_text())
    data = (job / "input.bin").read_bytes()
    P = cfg["payload_bytes"]
    lanes = cfg["lanes"]
    ui = cfg.get("ui_per_cycle", 8)
    lo = cfg["flit"] == "256lo"
    segs = [122, 126] if lo else [P]
    raw = cfg["flit"] == "raw"
    seed = int(cfg.get("seed", 1))
    rng = random.Random(seed)
    bp = float(cfg.get("backpressure", 0.0))
    max_cycles = int(cfg.get("max_cycles", 2_000_000))
    dut._log.info(f"transfer: {len(data)} bytes, {cfg['flit']} x{lanes}, ber={cfg.get('ber', 0)}, "
                  f"seed={seed}")

    ins = [(dut.a_s0_i__valid, dut.a_s0_i__ready, dut.a_s0_i__payload),
           (dut.a_s1_i__valid, dut.a_s1_i__ready, dut.a_s1_i__payload)]
    outs = [(dut.b_s0_o__valid, dut.b_s0_o__ready, dut.b_s0_o__payload),
            (dut.b_s1_o__valid, dut.b_s1_o__ready, dut.b_s1_o__payload)]
    # time 0: drive every input
    dut.rst.value = 1
    for die in "ab":
        getattr(dut, f"{die}_start").value = 0
    for v, _, p in ins:
        v.value = 0
        p.value = 0
    for _, r, _ in outs:
        r.value = 0
    common = dict(lanes=cfg["slots"], ui_per_cycle=ui, latency=int(cfg.get("flight", 4)),
                  ber=float(cfg.get("ber", 0.0)), burst_every=int(cfg.get("burst_every", 0)),
                  burst_len=int(cfg.get("burst_len", 0)), reverse=bool(cfg.get("reverse", False)))
    stuck_after = int(cfg.get("stuck_after", 0))
    stuck_cfg = ChannelConfig(**common, stuck_lane=int(cfg.get("stuck_lane", -1)),
                              stuck_value=int(cfg.get("stuck_value", 0)), seed=seed)
    ch_ab = Channel(stuck_cfg)
    if stuck_after:
        # the lane breaks mid-transfer: healthy until cycle `stuck_after` of the data phase
        ch_ab.config = dataclasses.replace(stuck_cfg, stuck_lane=-1)
    ch_ba = Channel(ChannelConfig(**common, seed=seed + 7919))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    cocotb.start_soon(_carry(dut, ((ch_ab, "a", "b"), (ch_ba, "b", "a"))))
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    lanecfg = dict(slots=cfg["slots"], ui=ui, lanes=lanes, spares=cfg["spares_per_group"],
                   group=cfg["group_lanes"])
    dut.a_start.value = 1
    dut.b_start.value = 1
    train_cycles = 0
    while not (int(dut.a_link_up.value) and int(dut.b_link_up.value)):
        await FallingEdge(dut.clk)
        train_cycles += 1
        if train_cycles > 40000:
            raise AssertionError(f"seed={seed}: link not trained after {train_cycles} clocks, "
                                 f"{_lane_summary(dut, lanecfg)}")
    bringup = _lane_summary(dut, lanecfg)
    dut._log.info(f"trained in {train_cycles} clocks: {bringup}")

    payloads = frame(data, P)
    if raw:
        # raw mode: one stream (no stream id on the wire)
        queues = [list(payloads), []]
    else:
        queues = [payloads[0::2], payloads[1::2]]
    qi = [0, 0]
    got = [[], []]
    partial = [b"", b""]
    accept_t = [[], []]
    lat, lat_first = [], []
    released = [0, 0]
    first_accept = last_release = None
    cycle = 0
    total = len(payloads)
    ints = [[int.from_bytes(p, "little") for p in q] for q in queues]
    clock = [0]

    async def count():
        while True:
            await FallingEdge(dut.clk)
            clock[0] += 1

    cocotb.start_soon(count())
    board = GoBackNScoreboard(seed=seed)
    board_error = None
    shown = [None, None]
    stall = [False, False]
    for _, r, _ in outs:
        r.value = 1
    while sum(len(g) for g in got) < total and clock[0] < max_cycles:
        await FallingEdge(dut.clk)
        if stuck_after and clock[0] >= stuck_after and ch_ab.config is not stuck_cfg:
            ch_ab.config = stuck_cfg
            dut._log.info(f"cycle {clock[0]}: lane {stuck_cfg.stuck_lane} now stuck at "
                          f"{stuck_cfg.stuck_value}")
        for s in range(2):
            v, _, p = ins[s]
            if qi[s] < len(queues[s]):
                if shown[s] != qi[s]:
                    v.value = 1
                    p.value = ints[s][qi[s]]
                    shown[s] = qi[s]
            elif shown[s] is not None:
                v.value = 0
                shown[s] = None
            if clock[0] % BP_WINDOW == 0:
                stall[s] = rng.random() < bp
                outs[s][1].value = 0 if stall[s] else 1
        await ReadOnly()
        cycle = clock[0]
        for s in range(2):
            v, r, _ = ins[s]
            if qi[s] < len(queues[s]) and int(r.value):
                board.sent(s, queues[s][qi[s]])
                qi[s] += 1
                accept_t[s].append(cycle)
                if first_accept is None:
                    first_accept = cycle
            ov, orr, op = outs[s]
            if int(ov.value) and int(orr.value):
                word = op.value.to_unsigned()
                chunk = (word & ((1 << (8 * P)) - 1)).to_bytes(P, "little")
                last = word >> (8 * P)
                n = segs[1] if (lo and partial[s]) else segs[0]
                if not partial[s] and accept_t[s][released[s]:]:
                    lat_first.append(cycle - accept_t[s][released[s]])
                partial[s] += chunk[:n]
                if last:
                    if board_error is None:
                        try:
                            board.received(s, partial[s])
                        except ScoreboardError as e:
                            board_error = str(e)
                    got[s].append(partial[s])
                    partial[s] = b""
                    if released[s] < len(accept_t[s]):
                        lat.append(cycle - accept_t[s][released[s]])
                    released[s] += 1
                    last_release = cycle
    await FallingEdge(dut.clk)

    if raw:
        received = got[0]
    else:
        received = []
        for i in range(len(got[0]) + len(got[1])):
            q = got[i % 2]
            j = i // 2
            if j >= len(q):
                break
            received.append(q[j])
    out = unframe(received)
    (job / "output.bin").write_bytes(out)

    def ctr(die, name):
        return getattr(dut, f"{die}_{name}").value.to_unsigned()

    counters = {f"{d}_{n}": ctr(d, n) for d in "ab" for n in COUNTERS}
    final_lanes = _lane_summary(dut, lanecfg)
    cycles = (last_release - first_accept + 1) if (first_accept is not None and last_release is not None) else cycle
    payload_bits = 8 * P * sum(len(g) for g in got)
    raw_bits = lanes * ui * max(cycles, 1)
    flight = int(cfg.get("flight", 4))
    ser = int(cfg["flit_cycles"])

    def stats(xs, sub=0):
        if not xs:
            return None, None, None
        ys = [x - sub for x in xs]
        return min(ys), round(sum(ys) / len(ys), 3), max(ys)

    lmin, lavg, lmax = stats(lat)
    fmin, favg, fmax = stats(lat_first)
    pmin, pavg, pmax = stats(lat, flight + ser)
    rtl_count = dut.lat_count.value.to_unsigned()
    rtl_latency = {"min": dut.lat_min.value.to_unsigned() if rtl_count else None,
                   "avg": round(dut.lat_sum.value.to_unsigned() / rtl_count, 3) if rtl_count else None,
                   "max": dut.lat_max.value.to_unsigned() if rtl_count else None,
                   "count": rtl_count}
    metrics = {
        "rtl_latency": rtl_latency,
        "bytes_in": len(data), "bytes_out": len(out),
        "flits": counters["b_rx_data_flits"], "tx_flits": counters["a_tx_flits"],
        "payloads": total, "cycles": cycles, "sim_cycles": cycle,
        "goodput": round(payload_bits / raw_bits, 6),
        "file_goodput": round(8 * len(out) / raw_bits, 6),
        "crc_errors": counters["a_crc_errors"] + counters["b_crc_errors"],
        "replays": counters["a_replays"] + counters["b_replays"],
        "retrains": counters["a_retrains"] + counters["b_retrains"],
        "phy_retrains": final_lanes["a"]["phy_retrains"] + final_lanes["b"]["phy_retrains"],
        "train_cycles": train_cycles,
        "latency_min": lmin, "latency_avg": lavg, "latency_max": lmax,
        "latency_first_min": fmin, "latency_first_avg": favg, "latency_first_max": fmax,
        "pipeline_latency_min": pmin, "pipeline_latency_avg": pavg, "pipeline_latency_max": pmax,
        "flight_cycles": flight, "serialization_cycles": ser,
        "bit_flips": ch_ab.flipped + ch_ba.flipped, "bursts": ch_ab.bursts + ch_ba.bursts,
        "completed": sum(len(g) for g in got) == total,
        "overflow": int(dut.a_overflow.value) | int(dut.b_overflow.value),
        "counters": counters, "seed": seed, "lanes_bringup": bringup, "lanes_final": final_lanes,
        "scoreboard": board_error or _finish(board),
    }
    _write_json(job / "metrics.json", metrics)
    dut._log.info(f"metrics: {json.dumps({k: v for k, v in metrics.items() if k != 'counters'})}")
