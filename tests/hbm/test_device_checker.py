"""The HBM device model's JEDEC checker, rule by rule.

For each timing rule: a hand-written command sequence whose last command comes ONE cycle too early
must be caught and named (and nothing else may fire), and the same sequence with the last command
at exactly the minimum spacing must pass. Together they pin the boundary (min - 1 fails, min
passes). Every timing case runs on every preset, with the spacings taken from the resolved timing,
so the check follows the data in hdl/hbm/timing.py. State and bus rules get an illegal and a legal
sequence each.
"""

import pytest

from diestack.hdl.hbm.timing import PRESETS, resolve
from diestack.sim.hbm.device import COMMANDS, Command, HBMDevice, TimingViolation

# Banks: A and B share a bank group, C is another group, D another SID (needs sids >= 2).
A = dict(sid=0, bg=0, ba=0)
B = dict(sid=0, bg=0, ba=1)
C = dict(sid=0, bg=1, ba=0)
D = dict(sid=1, bg=0, ba=0)
FAR = 200            # a cycle by which every ACT-related constraint of the prefix has expired


def act(cyc, bank, row=1):
    return (cyc, "ACT", dict(bank, row=row))


def col(cyc, cmd, bank, c=0):
    kw = dict(bank, col=c)
    if cmd in ("WR", "WRA"):
        kw["data"] = cyc            # data given with the command (no separate write_data call)
    return (cyc, cmd, kw)


def row(cyc, cmd, bank=None):
    return (cyc, cmd, dict(bank or {}))


# Each case: t -> (prefix, (cmd, kwargs) of the last command, the earliest legal cycle for it).
# A case may also need overrides so that its rule is the only binding one (listed in OVERRIDES).
def c_tRCD_RD(t):
    return [act(0, A)], ("RD", dict(A, col=3)), t.tRCD_RD


def c_tRCD_WR(t):
    return [act(0, A)], ("WR", dict(A, col=3, data=7)), t.tRCD_WR


def c_tRP(t):
    return [act(0, A), row(t.tRC, "PRE", A)], ("ACT", dict(A, row=2)), t.tRC + t.tRP


def c_tRP_prea(t):
    return [act(0, A), row(t.tRC, "PREA")], ("ACT", dict(A, row=2)), t.tRC + t.tRP


def c_tRP_rda(t):
    # RDA precharges internally at max(RDA + tRTP, ACT + tRAS); tRP counts from there.
    rd = max(t.tRCD_RD, t.tRAS)          # late enough that tRC is not the binding rule
    ap = max(rd + t.tRTP, t.tRAS)
    return [act(0, A), col(rd, "RDA", A)], ("ACT", dict(A, row=2)), max(ap + t.tRP, t.tRC)


def c_tRP_wra(t):
    wr = max(t.tRCD_WR, t.tRAS)
    ap = max(wr + t.WL + t.BL + t.tWR, t.tRAS)
    return [act(0, A), col(wr, "WRA", A)], ("ACT", dict(A, row=2)), max(ap + t.tRP, t.tRC)


def c_tRP_ref(t):
    return [act(0, A), row(t.tRC, "PRE", A)], ("REFab", {}), t.tRC + t.tRP


def c_tRAS(t):
    return [act(0, A)], ("PRE", A), t.tRAS


def c_tRC(t):                      # needs tRC > tRAS + tRP (override)
    return [act(0, A), row(t.tRAS, "PRE", A)], ("ACT", dict(A, row=2)), t.tRC


def c_tCCD_L(t):
    return [act(0, A), act(FAR, B), col(2 * FAR, "RD", A)], ("RD", dict(B, col=1)), 2 * FAR + t.tCCD_L


def c_tCCD_L_wr(t):
    return [act(0, A), act(FAR, B), col(2 * FAR, "WR", A)], ("WR", dict(B, col=1, data=7)), 2 * FAR + t.tCCD_L


def c_tCCD_S(t):
    return [act(0, A), act(FAR, C), col(2 * FAR, "RD", A)], ("RD", dict(C, col=1)), 2 * FAR + t.tCCD_S


def c_tCCD_R(t):                   # needs sids >= 2 (override for HBM2)
    return [act(0, A), act(FAR, D), col(2 * FAR, "RD", A)], ("RD", dict(D, col=1)), 2 * FAR + t.tCCD_R


def c_tCCD_R_wr(t):
    return [act(0, A), act(FAR, D), col(2 * FAR, "WR", A)], ("WR", dict(D, col=1, data=7)), 2 * FAR + t.tCCD_R


def c_tRRD_L(t):
    return [act(0, A)], ("ACT", dict(B, row=5)), t.tRRD_L


def c_tRRD_S(t):
    return [act(0, A)], ("ACT", dict(C, row=5)), t.tRRD_S


def c_tFAW(t):                     # needs tFAW > 4 x tRRD_S (override where the preset has less)
    s = t.tRRD_S
    banks = [dict(sid=0, bg=g, ba=0) for g in range(4)]
    prefix = [act(i * s, b) for i, b in enumerate(banks)]
    return prefix, ("ACT", dict(sid=0, bg=0, ba=1, row=9)), t.tFAW


def c_tWR(t):
    w = FAR
    return [act(0, A), col(w, "WR", A)], ("PRE", A), w + t.WL + t.BL + t.tWR


def c_tWR_prea(t):
    w = FAR
    return [act(0, A), col(w, "WR", A)], ("PREA", {}), w + t.WL + t.BL + t.tWR


def c_tWTR_L(t):
    w = FAR
    return [act(0, A), act(FAR // 2, B), col(w, "WR", A)], ("RD", dict(B, col=0)), w + t.WL + t.BL + t.tWTR_L


def c_tWTR_S(t):
    w = FAR
    return [act(0, A), act(FAR // 2, C), col(w, "WR", A)], ("RD", dict(C, col=0)), w + t.WL + t.BL + t.tWTR_S


def c_tRTP(t):
    r = FAR
    return [act(0, A), col(r, "RD", A)], ("PRE", A), r + t.tRTP


def c_tRTW(t):
    r = FAR
    return [act(0, A), act(FAR // 2, C), col(r, "RD", A)], ("WR", dict(C, col=0, data=7)), r + t.tRTW


def c_tPPD(t):                     # needs tPPD >= 2 (HBM3 has 2; override for HBM2/2E)
    return [act(0, A), act(FAR // 2, C), row(FAR, "PRE", A)], ("PRE", C), FAR + t.tPPD


def c_tRFC(t):
    return [row(0, "REFab")], ("ACT", dict(A, row=1)), t.tRFC


def c_tRFC_ref(t):
    return [row(0, "REFab")], ("REFab", {}), t.tRFC


def c_tRFCpb(t):
    return [row(0, "REFpb", A)], ("ACT", dict(A, row=1)), t.tRFCpb


def c_tRFCpb_refab(t):
    return [row(0, "REFpb", A)], ("REFab", {}), t.tRFCpb


def c_tRREFD(t):
    return [row(0, "REFpb", A)], ("ACT", dict(C, row=1)), t.tRREFD


def c_tRREFD_ref(t):
    return [row(0, "REFpb", A)], ("REFpb", C), t.tRREFD


TIMING_CASES = {
    "tRCD_RD": c_tRCD_RD, "tRCD_WR": c_tRCD_WR,
    "tRP": c_tRP, "tRP/PREA": c_tRP_prea, "tRP/RDA": c_tRP_rda, "tRP/WRA": c_tRP_wra,
    "tRP/REFab": c_tRP_ref,
    "tRAS": c_tRAS, "tRC": c_tRC,
    "tCCD_L": c_tCCD_L, "tCCD_L/WR": c_tCCD_L_wr, "tCCD_S": c_tCCD_S,
    "tCCD_R": c_tCCD_R, "tCCD_R/WR": c_tCCD_R_wr,
    "tRRD_L": c_tRRD_L, "tRRD_S": c_tRRD_S, "tFAW": c_tFAW,
    "tWR": c_tWR, "tWR/PREA": c_tWR_prea, "tWTR_L": c_tWTR_L, "tWTR_S": c_tWTR_S,
    "tRTP": c_tRTP, "tRTW": c_tRTW, "tPPD": c_tPPD,
    "tRFC": c_tRFC, "tRFC/REFab": c_tRFC_ref, "tRFCpb": c_tRFCpb, "tRFCpb/REFab": c_tRFCpb_refab,
    "tRREFD": c_tRREFD, "tRREFD/REFpb": c_tRREFD_ref,
}


def overrides_for(case, t):
    """Overrides that make the case's rule the only one binding at its boundary."""
    o = {}
    if case == "tRC":
        o["tRC"] = t.tRAS + t.tRP + 3
    if case.startswith("tCCD_R"):
        o["sids"] = max(2, t.sids)
    if case == "tFAW" and t.tFAW <= 4 * t.tRRD_S:
        o["tFAW"] = 4 * t.tRRD_S + 3
    if case == "tPPD" and t.tPPD < 2:
        o["tPPD"] = 2
    return o


def play(dev, seq):
    out = []
    for cyc, cmd, kw in seq:
        out.append(dev.issue(cyc, cmd, **kw))
    return out


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("case", list(TIMING_CASES))
def test_timing_rule_boundary(preset, case):
    base = resolve(preset)
    t = resolve(preset, overrides_for(case, base))
    rule = case.split("/")[0]
    prefix, (cmd, kw), legal = TIMING_CASES[case](t)
    assert legal >= 1 and all(c < legal for c, _, _ in prefix), "case is built wrong"

    # min - 1: caught, named, and the only rule that fires.
    dev = HBMDevice(t, strict=False, check_refresh=False)
    play(dev, prefix)
    assert dev.violation_total == 0, f"{case} prefix is not legal: {dev.violations}"
    dev.issue(legal - 1, cmd, **kw)
    assert dict(dev.violation_counts) == {rule: 1}, f"{preset} {case}: {dev.violations}"

    # strict: raises, and the message names the rule and both commands with their cycles.
    dev = HBMDevice(t, strict=True, check_refresh=False)
    play(dev, prefix)
    with pytest.raises(TimingViolation) as info:
        dev.issue(legal - 1, cmd, **kw)
    v = info.value
    assert v.rule == rule
    text = str(v)
    assert rule in text and cmd in text and f"@ cycle {legal - 1}" in text, text
    assert v.earlier_cmd is not None and f"@ cycle {v.earlier_cmd.cycle}" in text, text
    assert v.earlier_cmd.cmd in text
    assert v.actual == v.needed - 1, text

    # min: passes.
    dev = HBMDevice(t, strict=True, check_refresh=False)
    play(dev, prefix)
    dev.issue(legal, cmd, **kw)
    assert dev.violation_total == 0


# --- refresh deadline -------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_refresh_deadline_eight_postponed(preset):
    """With no refresh, the 9th interval's refresh is late: a command at 9 x tREFI - 1 passes, at 9 x tREFI fails."""
    t = resolve(preset)
    dev = HBMDevice(t, strict=True)
    dev.issue(9 * t.tREFI - 1, "ACT", **A, row=0)
    dev = HBMDevice(t, strict=False)
    dev.issue(9 * t.tREFI, "ACT", **A, row=0)
    assert dict(dev.violation_counts) == {"tREFI": 1}
    v = dev.violations[0]
    assert "tREFI" in str(v) and "power-up" in str(v) and "ACT" in str(v), str(v)


def test_refresh_postponed_then_caught_up():
    """Eight postponed refreshes issued back to back (tRFC apart) satisfy the deadline; one fewer does not."""
    t = resolve("hbm2")
    start = 8 * t.tREFI + 10
    dev = HBMDevice(t, strict=True)
    for k in range(8):
        dev.issue(start + k * t.tRFC, "REFab")
    # 8 done: the next one is due by (8 + 9) x tREFI
    dev.issue(17 * t.tREFI - 1, "ACT", **A, row=0)
    assert dev.finish(17 * t.tREFI - 1) == 0
    dev = HBMDevice(t, strict=False)
    for k in range(7):
        dev.issue(start + k * t.tRFC, "REFab")
    dev.issue(16 * t.tREFI, "ACT", **A, row=0)
    assert dict(dev.violation_counts) == {"tREFI": 1}, dev.violations
    assert "REFab" in str(dev.violations[0])


def test_refresh_deadline_at_finish():
    t = resolve("hbm2")
    dev = HBMDevice(t, strict=False)
    dev.issue(t.tREFI, "REFab")
    assert dev.finish(10 * t.tREFI - 1) == 0
    assert dev.finish(10 * t.tREFI) == 1
    assert "end @ cycle" in str(dev.violations[0])


def test_refresh_pull_in_capped():
    """Refreshes pulled in count at most 8 intervals ahead of the schedule."""
    t = resolve("hbm2")
    dev = HBMDevice(t, strict=False)
    for k in range(12):                  # 12 pulled in at once: only 8 count
        dev.issue(10 + k * t.tRFC, "REFab")
    dev.issue(8 * t.tREFI, "REFab")      # 9 done (13 without the cap)
    dev.issue(16 * t.tREFI, "REFab")     # 10 done (14 without the cap) -> due by (10 + 9) x tREFI
    dev.issue(19 * t.tREFI - 1, "ACT", **A, row=0)
    assert dev.violation_total == 0, dev.violations
    dev.issue(19 * t.tREFI, "PRE", **C)
    assert dict(dev.violation_counts) == {"tREFI": 1}
    assert "10 refreshes owed" not in str(dev.violations[0])   # 19 due - 10 done = 9 owed
    assert "9 refreshes owed" in str(dev.violations[0])


def test_refresh_gap_at_most_nine_intervals():
    """No bank may go 9 x tREFI without a refresh, even with refreshes pulled in."""
    t = resolve("hbm2")
    dev = HBMDevice(t, strict=False)
    for k in range(8):
        dev.issue(10 + k * t.tRFC, "REFab")
    last = 10 + 7 * t.tRFC
    dev.issue(last + 9 * t.tREFI - 1, "ACT", **A, row=0)
    assert dev.violation_total == 0
    dev.issue(last + 9 * t.tREFI, "PRE", **C)
    assert dict(dev.violation_counts) == {"tREFI": 1}
    assert "not refreshed since cycle" in str(dev.violations[0])


def test_per_bank_refresh_round_robin_and_starved_bank():
    """REFpb to every bank in turn (tREFIpb apart) is legal forever; refreshing one bank only is caught."""
    t = resolve("hbm2")
    dev = HBMDevice(t, strict=True)
    cyc = 0
    for k in range(12 * t.banks):
        b = k % t.banks
        cyc += t.tREFIpb
        dev.issue(cyc, "REFpb", sid=0, bg=b // 4, ba=b % 4)
    assert dev.finish(cyc + 1) == 0
    dev = HBMDevice(t, strict=False)
    cyc = 0
    while cyc < 9 * t.tREFI + t.tRFCpb:
        cyc += t.tRFCpb
        dev.issue(cyc, "REFpb", **A)
    assert dev.violation_counts["tREFI"] >= 1
    assert "not refreshed" in str(dev.violations[0]) and "bg0 ba1" in str(dev.violations[0])


# --- state and bus rules ------------------------------------------------------------------------
STATE_CASES = {
    # name: (rule, illegal sequence, legal sequence)
    "ACT to open bank": ("bank_open",
                         [act(0, A), act(100, A, row=2)],
                         [act(0, A), row(60, "PRE", A), act(100, A, row=2)]),
    "REFab with a bank open": ("bank_open",
                               [act(0, A), row(500, "REFab")],
                               [act(0, A), row(100, "PRE", A), row(500, "REFab")]),
    "REFpb to open bank": ("bank_open",
                           [act(0, A), row(500, "REFpb", A)],
                           [act(0, A), row(500, "REFpb", B)]),
    "RD to never-opened bank": ("bank_closed", [col(10, "RD", A)], [act(0, A), col(30, "RD", A)]),
    "WR to precharged bank": ("bank_closed",
                              [act(0, A), row(60, "PRE", A), col(100, "WR", A)],
                              [act(0, A), col(40, "WR", A), row(100, "PRE", A)]),
    "RD after RDA": ("bank_closed",
                     [act(0, A), col(30, "RDA", A), col(40, "RD", A, 1)],
                     [act(0, A), col(30, "RD", A), col(40, "RDA", A, 1)]),
    "two row commands in one cycle": ("row_bus",
                                      [act(0, A), row(0, "PRE", C)],
                                      [act(0, A), row(1, "PRE", C)]),
    "two column commands in one cycle": ("col_bus",
                                         [act(0, A), act(10, C), col(100, "RD", A), col(100, "RD", C)],
                                         [act(0, A), act(10, C), col(100, "RD", A), col(102, "RD", C)]),
    "row out of range": ("address", [act(0, A, row=1 << 20)], [act(0, A, row=0)]),
    "bank group out of range": ("address", [act(0, dict(sid=0, bg=7, ba=0))], [act(0, dict(sid=0, bg=3, ba=0))]),
    "column out of range": ("address", [act(0, A), col(40, "RD", A, 999)], [act(0, A), col(40, "RD", A, 31)]),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_state_and_bus_rules(case):
    rule, illegal, legal = STATE_CASES[case]
    t = resolve("hbm2")
    dev = HBMDevice(t, strict=False, check_refresh=False)
    play(dev, illegal)
    assert dev.violation_counts[rule] == 1, dev.violations
    first = dev.violations[0]
    assert first.rule == rule and rule in str(first) and str(first.later_cmd) in str(first)
    dev = HBMDevice(t, strict=True, check_refresh=False)
    with pytest.raises(TimingViolation) as info:
        play(dev, illegal)
    assert info.value.rule == rule
    dev = HBMDevice(t, strict=True, check_refresh=False)
    play(dev, legal)
    assert dev.violation_total == 0


def test_write_data_must_come_wl_after_write():
    t = resolve("hbm3")
    dev = HBMDevice(t, strict=False, check_refresh=False)
    dev.issue(0, "ACT", **A, row=3)
    dev.issue(t.tRCD_WR, "WR", **A, col=4)
    dev.write_data(t.tRCD_WR + t.WL - 1, 0x1234)       # one cycle early: stray, then missing
    dev.finish(t.tRCD_WR + t.WL + 5)
    assert dev.violation_counts["write_data"] == 2, dev.violations
    dev = HBMDevice(t, strict=True, check_refresh=False)
    dev.issue(0, "ACT", **A, row=3)
    w = t.tRCD_WR
    dev.issue(w, "WR", **A, col=4)
    dev.write_data(w + t.WL, 0x1234)
    due, data = dev.issue(w + t.WL + t.BL + t.tWTR_L, "RD", **A, col=4)
    assert (due, data) == (w + t.WL + t.BL + t.tWTR_L + t.RL, 0x1234)
    assert dev.finish(due) == 0


def test_violation_message_names_rule_and_both_commands():
    t = resolve("hbm2")
    dev = HBMDevice(t)
    dev.issue(100, "ACT", sid=0, bg=1, ba=2, row=7)
    with pytest.raises(TimingViolation) as info:
        dev.issue(110, "RD", sid=0, bg=1, ba=2, col=5)
    assert str(info.value) == ("tRCD_RD violated: RD sid0 bg1 ba2 col 5 @ cycle 110 after "
                               "ACT sid0 bg1 ba2 row 7 @ cycle 100: spacing 10 cycles, needs >= 14")


# --- data ---------------------------------------------------------------------------------------
def test_data_store_mask_and_read_latency():
    t = resolve("hbm2")
    dev = HBMDevice(t, check_refresh=False)
    dev.issue(0, "ACT", **C, row=77)
    full = int.from_bytes(bytes(range(32)), "little")
    dev.issue(20, "WR", **C, col=9, data=full)
    # masked write: bytes 0 and 31 keep their old value
    new = int.from_bytes(b"\xAA" * 32, "little")
    dev.issue(24, "WR", **C, col=9, data=new, mask=(1 << 0) | (1 << 31))
    due, data = dev.issue(24 + t.WL + t.BL + t.tWTR_L, "RD", **C, col=9)
    expect = bytearray(b"\xAA" * 32)
    expect[0], expect[31] = 0, 31
    assert data == int.from_bytes(expect, "little")
    assert due == 24 + t.WL + t.BL + t.tWTR_L + t.RL
    # another row of the same bank is a different location; unwritten reads 0
    dev.issue(200, "PRE", **C)
    dev.issue(300, "ACT", **C, row=78)
    assert dev.issue(330, "RD", **C, col=9)[1] == 0
    assert dev.peek(0, 1, 0, 77, 9) == int.from_bytes(expect, "little")


@pytest.mark.parametrize("data_bytes", [32, 36])
def test_random_byte_masks_on_the_dfi_data_path(data_bytes):
    """Write data arriving WL cycles after the WR (as on the DFI bus) with random byte masks:
    every masked byte keeps its old value, against a bytearray golden (32 B plain, 36 B = ECC)."""
    import os
    import random
    seed = int(os.environ.get("DIESTACK_SEED", random.randrange(1 << 30)))
    print(f"masks seed {seed}")
    rng = random.Random(seed)
    t = resolve("hbm2")
    dev = HBMDevice(t, data_bytes=data_bytes, check_refresh=False)
    dev.issue(0, "ACT", **C, row=5)
    want = [bytearray(data_bytes) for _ in range(4)]
    cyc = 20
    for _ in range(60):
        col = rng.randrange(4)
        data = rng.randbytes(data_bytes)
        mask = rng.getrandbits(data_bytes) if rng.random() < 0.8 else 0
        dev.issue(cyc, "WR", **C, col=col)
        dev.write_data(cyc + t.WL, int.from_bytes(data, "little"), mask)
        for j in range(data_bytes):
            if not mask >> j & 1:
                want[col][j] = data[j]
        cyc += t.tCCD_L + t.BL + t.WL
    cyc += t.WL + t.BL + t.tWTR_L
    for col in range(4):
        _, got = dev.issue(cyc, "RD", **C, col=col)
        assert got == int.from_bytes(want[col], "little"), f"col {col} seed {seed}"
        cyc += t.tCCD_L
    assert dev.violation_total == 0


def test_error_injection_flips_stored_bits():
    t = resolve("hbm2")
    dev = HBMDevice(t, data_bytes=36, check_refresh=False)
    dev.issue(0, "ACT", **A, row=1)
    dev.issue(20, "WR", **A, col=2, data=(1 << 287) | 5)
    assert dev.written() == [(0, 0, 0, 1, 2)]
    dev.flip_bits(0, 0, 0, 1, 2, [0, 287])
    assert dev.issue(60, "RD", **A, col=2)[1] == 4
    with pytest.raises(ValueError):
        dev.flip_bits(0, 0, 0, 1, 2, [288])


def test_counters_and_location_roundtrip():
    t = resolve("hbm3")
    dev = HBMDevice(t, check_refresh=False)
    dev.issue(0, "ACT", **D, row=5)
    dev.issue(t.tRCD_RD, "RD", **D, col=1)
    dev.issue(t.tRCD_RD + t.tCCD_L, "RDA", **D, col=2)
    assert dev.command_counts == {"ACT": 1, "RD": 1, "RDA": 1}
    assert set(dev.command_counts) <= set(COMMANDS)
    for loc in [(0, 0, 0, 0, 0), (1, 3, 3, t.rows - 1, t.columns - 1), (1, 2, 1, 77, 5)]:
        assert dev.location(dev.key(*loc)) == loc
    assert str(Command(5, "REFab", None, None, None, None, None)) == "REFab @ cycle 5"


def test_commands_out_of_order_are_a_usage_error():
    dev = HBMDevice(resolve("hbm2"))
    dev.issue(10, "PREA")
    with pytest.raises(ValueError):
        dev.issue(9, "PREA")
    with pytest.raises(ValueError):
        dev.issue(20, "NOP")


# --- differential test against a brute-force checker ---------------------------------------------
class NaiveChecker:
    """Every rule straight from its definition, checked against the WHOLE history (quadratic).

    Written independently of the device model's incremental bookkeeping: for each new command it
    scans all earlier commands. State semantics after an illegal command follow the device's
    documented ones (an ACT opens its row even if illegal, etc.).
    """

    def __init__(self, t):
        self.t = t
        self.hist = []                       # (cycle, cmd, bank tuple or None)
        self.open = {}                       # bank -> (row, act_cycle)
        self.pre = {}                        # bank -> cycle its precharge started
        self.rd_since_act = {}               # bank -> cycles of RD/RDA while open
        self.wr_since_act = {}
        self.horizon = max(v for k, v in t.as_dict().items() if k not in ("tREFI", "tREFIpb")) + t.WL + t.BL

    def banks(self):
        t = self.t
        return [(s, g, b) for s in range(t.sids) for g in range(t.bank_groups) for b in range(t.banks_per_group)]

    def step(self, cyc, cmd, bank, row=None):
        t, out = self.t, set()
        wend = t.WL + t.BL
        # commands older than the longest rule can no longer matter: drop them (speed only)
        horizon = self.horizon
        while self.hist and cyc - self.hist[0][0] > horizon:
            self.hist.pop(0)
        earlier = self.hist
        same_bus = [h for h in earlier if h[0] == cyc and ((h[1] in ("RD", "WR", "RDA", "WRA")) ==
                                                           (cmd in ("RD", "WR", "RDA", "WRA")))]
        if same_bus:
            out.add("col_bus" if cmd in ("RD", "WR", "RDA", "WRA") else "row_bus")

        def since(kinds, pred=lambda b: True):
            return [cyc - h[0] for h in earlier if h[1] in kinds and pred(h[2])]

        def precharged_ok(b):
            if b in self.open:
                out.add("bank_open")
            if b in self.pre and cyc - self.pre[b] < t.tRP:
                out.add("tRP")

        if cmd == "ACT":
            if bank in self.open:
                out.add("bank_open")
            if bank in self.pre and cyc - self.pre[bank] < t.tRP:
                out.add("tRP")
            if any(d < t.tRC for d in since({"ACT"}, lambda b: b == bank)):
                out.add("tRC")
            if any(d < t.tRRD_L for d in since({"ACT"}, lambda b: b != bank and b[:2] == bank[:2])):
                out.add("tRRD_L")
            if any(d < t.tRRD_S for d in since({"ACT"}, lambda b: b[:2] != bank[:2])):
                out.add("tRRD_S")
            if sum(d < t.tFAW for d in since({"ACT"})) >= 4:
                out.add("tFAW")
            if any(d < t.tRFC for d in since({"REFab"})):
                out.add("tRFC")
            if any(d < t.tRFCpb for d in since({"REFpb"}, lambda b: b == bank)):
                out.add("tRFCpb")
            if any(d < t.tRREFD for d in since({"REFpb"}, lambda b: b != bank)):
                out.add("tRREFD")
            self.open[bank] = (row, cyc)
            self.rd_since_act[bank], self.wr_since_act[bank] = [], []
        elif cmd in ("PRE", "PREA"):
            if any(d < t.tPPD for d in since({"PRE", "PREA"})):
                out.add("tPPD")
            for b in ([bank] if cmd == "PRE" else self.banks()):
                if b not in self.open:
                    continue
                if cyc - self.open[b][1] < t.tRAS:
                    out.add("tRAS")
                if any(cyc - c < t.tRTP for c in self.rd_since_act[b]):
                    out.add("tRTP")
                if any(cyc - c < wend + t.tWR for c in self.wr_since_act[b]):
                    out.add("tWR")
                del self.open[b]
                self.pre[b] = cyc
        elif cmd == "REFab":
            if any(d < t.tRFC for d in since({"REFab"})):
                out.add("tRFC")
            for b in self.banks():
                precharged_ok(b)
                if any(d < t.tRFCpb for d in since({"REFpb"}, lambda x: x == b)):
                    out.add("tRFCpb")
                if b in self.open:
                    del self.open[b]
                    self.pre[b] = cyc
        elif cmd == "REFpb":
            precharged_ok(bank)
            if any(d < t.tRFCpb for d in since({"REFpb"}, lambda b: b == bank)):
                out.add("tRFCpb")
            if any(d < t.tRFC for d in since({"REFab"})):
                out.add("tRFC")
            if any(d < t.tRREFD for d in since({"REFpb"}, lambda b: b != bank)):
                out.add("tRREFD")
            if bank in self.open:
                del self.open[bank]
                self.pre[bank] = cyc
        else:
            is_rd = cmd in ("RD", "RDA")
            same = {"RD", "RDA"} if is_rd else {"WR", "WRA"}
            if bank not in self.open:
                out.add("bank_closed")
            elif cyc - self.open[bank][1] < (t.tRCD_RD if is_rd else t.tRCD_WR):
                out.add("tRCD_RD" if is_rd else "tRCD_WR")
            if any(d < t.tCCD_L for d in since(same, lambda b: b[:2] == bank[:2])):
                out.add("tCCD_L")
            if any(d < t.tCCD_S for d in since(same, lambda b: b[0] == bank[0] and b[1] != bank[1])):
                out.add("tCCD_S")
            if any(d < t.tCCD_R for d in since(same, lambda b: b[0] != bank[0])):
                out.add("tCCD_R")
            if is_rd:
                if any(d < wend + t.tWTR_L for d in since({"WR", "WRA"}, lambda b: b[:2] == bank[:2])):
                    out.add("tWTR_L")
                if any(d < wend + t.tWTR_S for d in since({"WR", "WRA"}, lambda b: b[:2] != bank[:2])):
                    out.add("tWTR_S")
            elif any(d < t.tRTW for d in since({"RD", "RDA"})):
                out.add("tRTW")
            if bank in self.open:
                (self.rd_since_act if is_rd else self.wr_since_act)[bank].append(cyc)
                if cmd in ("RDA", "WRA"):
                    act_cycle = self.open.pop(bank)[1]
                    ap = cyc + t.tRTP if is_rd else cyc + wend + t.tWR
                    self.pre[bank] = max(ap, act_cycle + t.tRAS)
        self.hist.append((cyc, cmd, bank))
        return out


@pytest.mark.parametrize("preset", list(PRESETS))
def test_checker_agrees_with_brute_force_on_random_streams(preset):
    """Random command streams (legal and illegal mixed): the incremental checker flags exactly the
    commands the brute-force one flags, and every rule it names is one the brute force found."""
    import os
    import random
    seed = int(os.environ.get("DIESTACK_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    rng = random.Random(seed)
    t = resolve(preset, {"sids": 2, "rows": 4} if preset == "hbm2" else {"rows": 4})
    dev = HBMDevice(t, strict=False, check_refresh=False, max_recorded=10 ** 6)
    ref = NaiveChecker(t)
    banks = ref.banks()
    # a few "hot" banks so that same-bank / same-group interactions are frequent
    hot = rng.sample(banks, 6)
    cyc = 0
    flagged = 0
    cmds = ["ACT"] * 6 + ["PRE"] * 4 + ["RD"] * 5 + ["WR"] * 4 + ["RDA", "WRA", "PREA", "REFab", "REFpb"]
    for i in range(1500):
        cyc += rng.choice([0, 1, 1, 2, 2, 3, 4, 5, 8, 12, 20, 40])
        cmd = rng.choice(cmds)
        bank = rng.choice(hot if rng.random() < 0.8 else banks)
        row = rng.randrange(t.rows)
        before = dev.violation_total
        before_rules = dict(dev.violation_counts)
        if cmd in ("RD", "WR", "RDA", "WRA"):
            dev.issue(cyc, cmd, *bank, col=rng.randrange(t.columns), data=0 if cmd[0] == "W" else None)
        elif cmd in ("PREA", "REFab"):
            dev.issue(cyc, cmd)
        else:
            dev.issue(cyc, cmd, *bank, row=row if cmd == "ACT" else None)
        got = {r for r, n in dev.violation_counts.items() if n > before_rules.get(r, 0)}
        want = ref.step(cyc, cmd, None if cmd in ("PREA", "REFab") else bank, row)
        where = f"seed {seed} {preset} step {i}: {cmd} {bank} @ {cyc}"
        assert bool(got) == bool(want), f"{where}: device {got or 'legal'}, brute force {want or 'legal'}"
        assert got <= want, f"{where}: device {got}, brute force {want}"
        flagged += bool(want)
        assert dev.violation_total >= before
    # the stream must exercise both verdicts substantially
    assert 100 < flagged < 1400, f"seed {seed}: {flagged} of 1500 flagged"
