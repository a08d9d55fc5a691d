"""HBM timing presets: values against the reference table, ns -> cycle rounding, overrides, errors.

Expected values are typed in from ../shared/reference/hbm.md §1.2 (not read from timing.py).
"""

import dataclasses

import pytest

from diestack.hdl.common.params import ConfigError
from diestack.hdl.hbm.timing import (HBMPreset, ORG_NAMES, PRESETS, TIMING_NAMES, ns_to_cycles,
                                     resolve)

# hbm.md §1.2, column "R21-HBM2 2.0 Gb/s (1 ns)": tCK 1 ns, so ns == cycles. tRFC 350 ns and
# tRFCpb 160 ns are the 8 Gb-per-channel rows of the density table; tRRD_S/L 4 ns, tFAW 15 ns,
# tRREFD 8 ns, tREFI 3.9 us from the notes on resolve_secondary_timings().
HBM2_TABLE = dict(RL=14, WL=5, BL=2, tRCD_RD=14, tRCD_WR=12, tRP=14, tRAS=34, tRC=48, tCCD_S=2,
                  tCCD_L=4, tRRD_S=4, tRRD_L=4, tFAW=15, tWR=16, tWTR_S=6, tWTR_L=8, tRTP=5,
                  tRTW=13, tRFC=350, tRFCpb=160, tRREFD=8, tREFI=3900)
# hbm.md §1.2, column "R21-HBM3 6.4 Gb/s (0.625 ns)", in CK. tRFC "8 Gb ch -> 560 CK",
# tRFCpb "320 CK (200 ns)", tREFI "6240 CK (3.9 us)".
HBM3_TABLE = dict(RL=20, WL=10, BL=2, tRCD_RD=31, tRCD_WR=15, tRP=26, tRAS=45, tRC=72, tCCD_S=2,
                  tCCD_L=4, tCCD_R=3, tRRD_S=4, tRRD_L=5, tFAW=24, tWR=33, tWTR_S=7, tWTR_L=10,
                  tRTP=9, tRTW=20, tPPD=2, tRFC=560, tRFCpb=320, tRREFD=8, tREFI=6240)


@pytest.mark.parametrize("preset,table", [("hbm2", HBM2_TABLE), ("hbm3", HBM3_TABLE)])
def test_preset_matches_reference_column(preset, table):
    d = resolve(preset).as_dict()
    for name, value in table.items():
        assert d[name] == value, f"{preset} {name}: {d[name]} != hbm.md {value}"


def test_hbm3_ns_annotations_agree_with_cycles():
    """The R21-HBM3 column also gives ns; cycles x 0.625 ns must round-trip to them."""
    t = resolve("hbm3")
    for name, ns in dict(tRCD_RD=19.4, tRP=16.3, tRAS=28.1, tRC=45, tRRD_S=2.5, tRRD_L=3.1,
                         tFAW=15, tWR=20.6, tRFCpb=200, tREFI=3900, RL=12.5).items():
        assert ns_to_cycles(ns, t.clock_ns) in (getattr(t, name), getattr(t, name) + 1), name
        assert abs(getattr(t, name) * t.clock_ns - ns) < 0.625, name


def test_organisation_and_peak_bandwidth():
    # hbm.md §1.1: 16 GB/s per PC at 2 Gb/s (HBM2); 51.2 GB/s per channel = 25.6 per PC (HBM2E,
    # HBM3); 32 B per pseudo-channel access; 4 BG x 4 banks; 1 KB page per PC.
    expect = {"hbm2": (1.0, 16.0, 1, 64, 4), "hbm2e": (0.625, 25.6, 2, 64, 4), "hbm3": (0.625, 25.6, 2, 32, 8)}
    for name, (tck, peak, sids, dq, bl) in expect.items():
        t = resolve(name)
        assert t.clock_ns == tck and abs(t.peak_gbps - peak) < 1e-9, name
        assert (t.sids, t.dq_bits, t.burst_length) == (sids, dq, bl)
        assert t.bytes_per_burst == 32 and t.page_bytes == 1024
        assert (t.bank_groups, t.banks_per_group) == (4, 4)
        assert t.banks == 16 * sids
        assert t.tREFIpb == t.tREFI // t.banks
        org = t.organisation()
        assert org["peak_gbps"] == t.peak_gbps and org["columns"] == 32


def test_hbm2e_is_hbm2_ns_at_0625():
    """HBM2E takes the HBM2 ns values and rounds them UP at tCK = 0.625 ns."""
    t = resolve("hbm2e")
    assert t.tRCD_RD == 23          # 14 ns / 0.625 = 22.4 -> 23
    assert t.tFAW == 24             # 15 ns / 0.625 = 24 exactly (no spurious +1)
    assert t.tRRD_S == 7            # 4 ns -> 6.4 -> 7
    assert t.tREFI == 6240          # 3900 / 0.625
    assert t.tRFC == 720            # 450 ns (>8 Gb/ch)
    assert t.tRTW == t.RL + t.BL + 2 - t.WL
    assert t.tRC >= t.tRAS + t.tRP  # separate ceilings would break tRC = tRAS + tRP; resolve repairs it


@pytest.mark.parametrize("ns,tck,cycles", [(15, 1.0, 15), (15.0001, 1.0, 16), (14, 0.625, 23),
                                           (15, 0.625, 24), (0.1, 0.625, 1), (0, 1.0, 0),
                                           (3900, 0.625, 6240), (2.5, 0.625, 4)])
def test_ns_to_cycles_rounds_up(ns, tck, cycles):
    assert ns_to_cycles(ns, tck) == cycles


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_parameter_is_a_positive_int_and_consistent(preset):
    t = resolve(preset)
    d = t.as_dict()
    assert list(d) == list(TIMING_NAMES)
    for k in ("tRCD_RD", "tRCD_WR", "tRP", "tRAS", "tRC", "tCCD_S", "tCCD_L", "tRRD_S", "tRRD_L",
              "tFAW", "tWR", "tWTR_S", "tWTR_L", "tRTP", "tRTW", "RL", "WL", "BL", "tRFC",
              "tRFCpb", "tRREFD", "tREFI"):
        assert isinstance(d[k], int) and d[k] >= 1, k
    assert t.tRC >= t.tRAS + t.tRP and t.tCCD_L >= t.tCCD_S >= t.BL
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.tRP = 1


def test_overrides_cycles_and_quantities():
    t = resolve("hbm2", {"tFAW": 20, "tRP": "15.5ns", "tRRD_L": "6ck", "sids": 2, "rows": 1024})
    assert (t.tFAW, t.tRP, t.tRRD_L, t.sids, t.rows) == (20, 16, 6, 2, 1024)
    assert t.banks == 32 and t.tREFIpb == 3900 // 32
    # tRC not overridden: raised to tRAS + tRP when an override makes that larger
    assert t.tRC == 34 + 16
    assert resolve("hbm2", {"tRP": 16, "tRC": 60}).tRC == 60
    t3 = resolve("hbm3", {"tRP": "20ns"})
    assert t3.tRP == 32 and t3.tRC == max(72, 45 + 32)
    assert resolve(PRESETS["hbm3"]).tRCD_RD == 31
    assert resolve("HBM3").preset == "hbm3"


@pytest.mark.parametrize("overrides,field", [
    ({"tFOO": 3}, "tFOO"),
    ({"tRP": -1}, "tRP"),
    ({"tRP": 2.5}, "tRP"),
    ({"tRP": "fast"}, "tRP"),
    ({"tRP": "2.5ck"}, "tRP"),
    ({"tRP": "1e400ns"}, "tRP"),                # float('inf') would crash math.ceil / int()
    ({"tRP": "1e400ck"}, "tRP"),
    ({"tRP": True}, "tRP"),
    ({"BL": 0}, "BL"),
    ({"tRC": 10}, "tRC"),
    ({"tCCD_L": 1}, "tCCD_L"),
    ({"tRRD_S": 9}, "tRRD_L"),
    ({"tREFI": 100}, "tREFI"),
    ({"tRTW": 1}, "tRTW"),
    ({"sids": 3}, "sids"),
    ({"rows": 1000}, "rows"),
    ({"bank_groups": 0}, "bank_groups"),
])
def test_bad_overrides_name_the_parameter(overrides, field):
    with pytest.raises(ConfigError) as info:
        resolve("hbm2", overrides)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_bad_preset():
    with pytest.raises(ConfigError) as info:
        resolve("ddr4")
    assert info.value.field == "preset" and "hbm2" in str(info.value)
    with pytest.raises(ConfigError):
        resolve(42)
    with pytest.raises(ConfigError):
        HBMPreset(name="x", standard="", data_rate_gbps=1, tck_ns=1, dq_bits=64, burst_length=4,
                  sids=1, bank_groups=4, banks_per_group=4, rows=1, columns=1,
                  timings={"tXYZ": (1, "ck")})


def test_override_names_are_listed():
    with pytest.raises(ConfigError) as info:
        resolve("hbm2", {"trcd": 3})
    for name in ("tRCD_RD", "tREFI", *ORG_NAMES):
        assert name in str(info.value)
