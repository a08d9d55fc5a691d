"""HBM timing presets as data, resolved once to controller cycles.

A preset (:class:`HBMPreset`) is a catalogue entry: the organisation of one pseudo-channel (PC) and
every JEDEC timing parameter in the unit the source gives it in, nanoseconds (``NS``) or clock
cycles (``CK``). :func:`resolve` turns a preset plus user overrides into an :class:`HBMTiming`
whose parameters are all integer controller cycles. Nothing else in diestack converts ns to cycles.

Controller clock
----------------
The controller clock is the HBM command clock CK (a 1:1 DFI frequency ratio): one row command and
one column command may be issued per controller cycle, and every cycle count below equals the
JEDEC ``nCK`` count. At HBM2 2.0 Gb/s the data pins are DDR on CK, so tCK = 1 ns (1 GHz) and a BL4
burst occupies 2 CK; at HBM2E 3.2 Gb/s tCK = 0.625 ns (1.6 GHz), BL4 = 2 CK; at HBM3 6.4 Gb/s the
data are DDR on WDQS = 2 x CK, so tCK = 0.625 ns and a BL8 burst occupies 2 CK (hbm.md §1.2, R21-HBM3
"nBL 2 (BL8 on 4xCK data rate)"). Choosing CK keeps the cycle counts identical to the JEDEC tables
and to the public simulators, so our results compare one for one; a real PHY would run the
controller at CK/2 or CK/4 with several command slots per cycle, which changes the clock, not the
schedule. ``clock_ns`` is that tCK; ``peak_gbps`` = bytes per burst / (BL cycles x tCK) in GB/s
(10^9 bytes per second) for one pseudo-channel.

Simplifications (documented, checked nowhere else): HBM3's 1.5-CK ACT / 0.5-CK PRE row commands
(hbm.md §1.2 notes) are modelled as one row-bus slot each; RFM is not modelled.

Example::

    t = resolve("hbm2", {"tFAW": 16})
    t.tRCD_RD, t.clock_ns, t.as_dict()["tFAW"]   # 14, 1.0, 16
"""

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from ..common.params import ConfigError, check_int, check_number

__all__ = ["NS", "CK", "HBMPreset", "HBMTiming", "PRESETS", "TIMING_NAMES", "ORG_NAMES", "resolve"]

NS = "ns"
CK = "ck"

#: Every timing parameter, in the order reported by :meth:`HBMTiming.as_dict`, with its meaning.
TIMING_DOC = {
    "RL": "read latency: RD/RDA command to first read data (CL)",
    "WL": "write latency: WR/WRA command to first write data (CWL)",
    "BL": "data-bus cycles one burst occupies (nBL), not the burst length in beats",
    "tRCD_RD": "ACT to RD/RDA, same bank",
    "tRCD_WR": "ACT to WR/WRA, same bank",
    "tRP": "PRE (or auto-precharge) to ACT/REF, same bank",
    "tRAS": "ACT to PRE, same bank",
    "tRC": "ACT to ACT, same bank",
    "tCCD_S": "column command to column command of the same type, different bank group, same SID",
    "tCCD_L": "column command to column command of the same type, same bank group",
    "tCCD_R": "column command to column command of the same type, different SID",
    "tRRD_S": "ACT to ACT, different bank group (or SID)",
    "tRRD_L": "ACT to ACT, same bank group",
    "tFAW": "window in which at most four ACTs may be issued per pseudo-channel",
    "tWR": "write recovery: end of write data to PRE, same bank",
    "tWTR_S": "end of write data to RD, different bank group (or SID)",
    "tWTR_L": "end of write data to RD, same bank group",
    "tRTP": "RD to PRE, same bank",
    "tRTW": "RD to WR anywhere in the pseudo-channel (read-to-write bus turnaround)",
    "tPPD": "PRE/PREA to PRE/PREA, same pseudo-channel",
    "tRFC": "REFab to any ACT or REF",
    "tRFCpb": "REFpb to ACT or REF of the same bank",
    "tRREFD": "REFpb to ACT or REFpb of another bank",
    "tREFI": "average refresh interval (all-bank); up to 8 REFab may be postponed",
    "tREFIpb": "per-bank refresh interval = tREFI / banks per pseudo-channel",
}
TIMING_NAMES = tuple(TIMING_DOC)
#: Organisation fields that may be overridden by name.
ORG_NAMES = ("sids", "bank_groups", "banks_per_group", "rows")
_MIN_ONE = {"RL", "WL", "BL", "tCCD_S", "tCCD_L", "tCCD_R", "tPPD", "tRC", "tRAS", "tRFC",
            "tRFCpb", "tREFI", "tREFIpb", "tFAW", "tRRD_S", "tRRD_L"}


@dataclass(frozen=True)
class HBMPreset:
    """One speed grade of one pseudo-channel, as data.

    Parameters
    ----------
    name : str
        Preset name (``hbm2``, ``hbm2e``, ``hbm3``).
    standard : str
        Human-readable standard and source column.
    data_rate_gbps : float
        Data rate per pin, Gb/s.
    tck_ns : float
        Command clock period (= controller clock), ns.
    dq_bits : int
        Data pins of one pseudo-channel.
    burst_length : int
        Beats per burst (BL4 for HBM2/2E pseudo-channel mode, BL8 for HBM3).
    sids, bank_groups, banks_per_group, rows, columns : int
        Organisation of one pseudo-channel; ``columns`` counts column accesses (bursts) per row.
    timings : mapping
        ``name -> (value, unit)`` with unit :data:`NS` or :data:`CK`; ``tRTW`` may be ``None``
        to derive it as ``RL + BL + 2 - WL`` (hbm.md §1.2, R21-HBM2 "CL+BL+2-CWL"), and ``tREFIpb``
        is always derived from ``tREFI``.
    """
    name: str
    standard: str
    data_rate_gbps: float
    tck_ns: float
    dq_bits: int
    burst_length: int
    sids: int
    bank_groups: int
    banks_per_group: int
    rows: int
    columns: int
    timings: MappingProxyType = field(repr=False)

    def __post_init__(self):
        check_number(f"{self.name}.tck_ns", self.tck_ns, lo=0, lo_open=True)
        for name in self.timings:
            if name not in TIMING_DOC:
                raise ConfigError(f"{self.name}.{name}", "unknown HBM timing parameter")


def _preset(**kw):
    kw["timings"] = MappingProxyType(dict(kw["timings"]))
    return HBMPreset(**kw)


# --- the catalogue ---------------------------------------------------------------------------
# HBM2 2.0 Gb/s, pseudo-channel mode: hbm.md §1.2, column "R21-HBM2 2.0 Gb/s (1 ns)" (Ramulator 2.1
# hbm2.py HBM2_2000Mbps). Organisation: hbm.md §1.1 HBM2 column (PC mode, 64-bit PC, BL4 = 32 B,
# 4 BG x 4 banks, 1 KB page per PC). Density: 8 Gb per channel (4 Gb per PC, 4H, one SID), which
# gives 32768 rows of 1 KB and selects tRFC = 350 ns / tRFCpb = 160 ns from the R21 density table.
HBM2 = _preset(
    name="hbm2", standard="HBM2 JESD235 pseudo-channel, R21-HBM2 2.0 Gb/s column",
    data_rate_gbps=2.0, tck_ns=1.0, dq_bits=64, burst_length=4,
    sids=1, bank_groups=4, banks_per_group=4, rows=32768, columns=32,
    timings={
        "RL": (14, CK), "WL": (5, CK), "BL": (2, CK),                 # hbm.md §1.2 R21-HBM2
        "tRCD_RD": (14, CK), "tRCD_WR": (12, CK), "tRP": (14, CK),
        "tRAS": (34, CK), "tRC": (48, CK),
        "tCCD_S": (2, CK), "tCCD_L": (4, CK),
        "tCCD_R": (2, CK),               # no tCCD_R in HBM2 (hbm.md §1.2 "—"): same as tCCD_S
        "tRRD_S": (4.0, NS), "tRRD_L": (4.0, NS), "tFAW": (15.0, NS),  # resolve_secondary_timings
        "tWR": (16, CK), "tWTR_S": (6, CK), "tWTR_L": (8, CK),
        "tRTP": (5, CK),                 # RTPL
        "tRTW": (13, CK),                # CL+BL+2-CWL = 14+2+2-5
        "tPPD": (1, CK),                 # no tPPD in HBM2: one PRE per row-bus slot
        "tRFC": (350.0, NS), "tRFCpb": (160.0, NS),                     # 8 Gb/ch density row
        "tRREFD": (8.0, NS), "tREFI": (3900.0, NS),
    })

# HBM2E 3.2 Gb/s, pseudo-channel mode. hbm.md has no simulator column for HBM2E; JEDEC core
# timings are set in ns and do not change with the I/O speed, so we take the R21-HBM2 2.0 Gb/s
# values (tCK 1 ns, so cycles = ns) as ns and resolve them at tCK 0.625 ns (1.6 GHz CK, DDR data,
# hbm.md §1.1: 3.2 Gb/s, 51.2 GB/s per channel = 25.6 GB/s per PC). RL and WL are likewise kept as
# latencies in ns. Counts that are in CK by definition (BL, tCCD_S/L) stay counts; tRTW is derived.
# Organisation: 16 Gb per channel, 8H (two SIDs), 4 BG x 4 banks per SID, 1 KB page -> 32768 rows;
# tRFC = 450 ns / tRFCpb = 200 ns from the >8 Gb/ch density row.
HBM2E = _preset(
    name="hbm2e", standard="HBM2E JESD235C/D pseudo-channel, R21-HBM2 ns values at 3.2 Gb/s",
    data_rate_gbps=3.2, tck_ns=0.625, dq_bits=64, burst_length=4,
    sids=2, bank_groups=4, banks_per_group=4, rows=32768, columns=32,
    timings={
        "RL": (14.0, NS), "WL": (5.0, NS), "BL": (2, CK),
        "tRCD_RD": (14.0, NS), "tRCD_WR": (12.0, NS), "tRP": (14.0, NS),
        "tRAS": (34.0, NS), "tRC": (48.0, NS),
        "tCCD_S": (2, CK), "tCCD_L": (4, CK), "tCCD_R": (2, CK),
        "tRRD_S": (4.0, NS), "tRRD_L": (4.0, NS), "tFAW": (15.0, NS),
        "tWR": (16.0, NS), "tWTR_S": (6.0, NS), "tWTR_L": (8.0, NS),
        "tRTP": (5.0, NS),
        "tRTW": None,                    # derived: RL + BL + 2 - WL (cycles)
        "tPPD": (1, CK),
        "tRFC": (450.0, NS), "tRFCpb": (200.0, NS),
        "tRREFD": (8.0, NS), "tREFI": (3900.0, NS),
    })

# HBM3 6.4 Gb/s: hbm.md §1.2, column "R21-HBM3 6.4 Gb/s (0.625 ns)" (Ramulator 2.1 hbm3.py
# HBM3_6400Mbps, "Table 4 in JESD238"), all in CK. Organisation: hbm.md §1.1 HBM3 column: 32-bit PC,
# BL8 = 32 B, 4 BG x 4 banks per SID, 1 KB page; 8H -> two SIDs. Density 8 Gb per channel (4 Gb per
# PC -> 16384 rows), which selects tRFC = 560 CK (350 ns) and tRFCpb = 320 CK (200 ns).
HBM3 = _preset(
    name="hbm3", standard="HBM3 JESD238 pseudo-channel, R21-HBM3 6.4 Gb/s column",
    data_rate_gbps=6.4, tck_ns=0.625, dq_bits=32, burst_length=8,
    sids=2, bank_groups=4, banks_per_group=4, rows=16384, columns=32,
    timings={
        "RL": (20, CK), "WL": (10, CK), "BL": (2, CK),
        "tRCD_RD": (31, CK), "tRCD_WR": (15, CK), "tRP": (26, CK),
        "tRAS": (45, CK), "tRC": (72, CK),
        "tCCD_S": (2, CK), "tCCD_L": (4, CK), "tCCD_R": (3, CK),
        "tRRD_S": (4, CK), "tRRD_L": (5, CK), "tFAW": (24, CK),
        "tWR": (33, CK), "tWTR_S": (7, CK), "tWTR_L": (10, CK),
        "tRTP": (9, CK), "tRTW": (20, CK), "tPPD": (2, CK),
        "tRFC": (560, CK), "tRFCpb": (320, CK),
        "tRREFD": (8, CK), "tREFI": (6240, CK),
    })

PRESETS = MappingProxyType({p.name: p for p in (HBM2, HBM2E, HBM3)})


@dataclass(frozen=True)
class HBMTiming:
    """Every timing parameter of one pseudo-channel in integer controller cycles, plus organisation.

    Built by :func:`resolve`; do not construct by hand. Timing attributes carry their JEDEC names
    (see :data:`TIMING_DOC`); ``BL`` is the number of data-bus cycles of one burst.
    """
    preset: str
    data_rate_gbps: float
    clock_ns: float
    dq_bits: int
    burst_length: int
    sids: int
    bank_groups: int
    banks_per_group: int
    rows: int
    columns: int
    RL: int
    WL: int
    BL: int
    tRCD_RD: int
    tRCD_WR: int
    tRP: int
    tRAS: int
    tRC: int
    tCCD_S: int
    tCCD_L: int
    tCCD_R: int
    tRRD_S: int
    tRRD_L: int
    tFAW: int
    tWR: int
    tWTR_S: int
    tWTR_L: int
    tRTP: int
    tRTW: int
    tPPD: int
    tRFC: int
    tRFCpb: int
    tRREFD: int
    tREFI: int
    tREFIpb: int

    # --- organisation ----------------------------------------------------------------------
    @property
    def bytes_per_burst(self):
        """Bytes moved by one column access (one burst) on one pseudo-channel."""
        return self.dq_bits * self.burst_length // 8

    @property
    def banks_per_sid(self):
        return self.bank_groups * self.banks_per_group

    @property
    def banks(self):
        """Banks in the pseudo-channel, over all stack IDs."""
        return self.sids * self.bank_groups * self.banks_per_group

    @property
    def page_bytes(self):
        return self.columns * self.bytes_per_burst

    @property
    def capacity_bytes(self):
        """Bytes addressable in one pseudo-channel."""
        return self.banks * self.rows * self.page_bytes

    @property
    def clock_mhz(self):
        return 1000.0 / self.clock_ns

    @property
    def peak_gbps(self):
        """Peak data bandwidth of one pseudo-channel in GB/s (10^9 bytes/s): one burst per BL cycles."""
        return self.bytes_per_burst / (self.BL * self.clock_ns)

    def as_dict(self):
        """Every timing parameter in controller cycles under its JEDEC name (insertion-ordered)."""
        return {name: getattr(self, name) for name in TIMING_NAMES}

    def organisation(self):
        """Organisation and clock as a JSON-ready dict."""
        return {
            "preset": self.preset, "sids": self.sids, "bank_groups": self.bank_groups,
            "banks_per_group": self.banks_per_group, "banks": self.banks, "rows": self.rows,
            "columns": self.columns, "bytes_per_burst": self.bytes_per_burst,
            "burst_length": self.burst_length, "dq_bits": self.dq_bits,
            "page_bytes": self.page_bytes, "capacity_bytes": self.capacity_bytes,
            "data_rate_gbps": self.data_rate_gbps, "clock_ns": self.clock_ns,
            "peak_gbps": self.peak_gbps,
        }


def ns_to_cycles(ns, tck_ns):
    """Smallest whole number of cycles of ``tck_ns`` that covers ``ns`` (ceil, tolerant of FP noise)."""
    return max(0, math.ceil(ns / tck_ns - 1e-9))


_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|ck|nck|cycles?)?\s*$", re.I)


def _override_cycles(name, value, tck_ns):
    """An override is an int (cycles) or a string like ``"15ns"`` / ``"24ck"``."""
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            raise ConfigError(name, f"must be a cycle count or a quantity like '15ns' or '24ck', not {value!r}")
        number, unit = float(m.group(1)), (m.group(2) or "ck").lower()
        if not math.isfinite(number):
            raise ConfigError(name, f"must be a finite quantity, not {value!r}")
        if unit == "ns":
            return ns_to_cycles(number, tck_ns)
        if number != int(number):
            raise ConfigError(name, f"a cycle count must be whole, not {value!r}")
        return int(number)
    return check_int(name, value, lo=0)


def resolve(preset, overrides=None):
    """Resolve a preset (name or :class:`HBMPreset`) and overrides to an :class:`HBMTiming`.

    Parameters
    ----------
    preset : str or HBMPreset
        ``"hbm2"``, ``"hbm2e"``, ``"hbm3"`` or a preset object.
    overrides : mapping, optional
        ``{name: value}``. Timing names (:data:`TIMING_NAMES`) take controller cycles (int) or a
        string quantity (``"15ns"``, ``"24ck"``); organisation names (:data:`ORG_NAMES`) take ints.

    Raises
    ------
    ConfigError
        Unknown preset or parameter, a value of the wrong type or range, or an inconsistent set
        (e.g. ``tRC < tRAS + tRP``); ``field`` names the parameter.
    """
    if isinstance(preset, str):
        key = preset.lower()
        if key not in PRESETS:
            raise ConfigError("preset", f"must be one of {', '.join(PRESETS)}, not {preset!r}")
        preset = PRESETS[key]
    elif not isinstance(preset, HBMPreset):
        raise ConfigError("preset", f"must be a preset name or HBMPreset, not {preset!r}")
    overrides = dict(overrides or {})
    for name in overrides:
        if name not in TIMING_DOC and name not in ORG_NAMES:
            raise ConfigError(name, "unknown HBM parameter; known: "
                              + ", ".join(TIMING_NAMES + ORG_NAMES))
    tck = preset.tck_ns

    org = {}
    for name in ORG_NAMES:
        value = overrides.get(name, getattr(preset, name))
        if name == "sids":
            org[name] = check_int(name, value, choices=(1, 2, 4))
        elif name == "rows":
            org[name] = check_int(name, value, lo=1, hi=1 << 20)
            if org[name] & (org[name] - 1):
                raise ConfigError(name, f"must be a power of two, not {org[name]}")
        else:
            org[name] = check_int(name, value, choices=(1, 2, 4, 8))

    cyc = {}
    for name in TIMING_NAMES:
        if name in ("tRTW", "tREFIpb") and preset.timings.get(name) is None:
            continue
        value, unit = preset.timings[name]
        cyc[name] = ns_to_cycles(value, tck) if unit == NS else int(value)
    for name, value in overrides.items():
        if name in TIMING_DOC:
            cyc[name] = _override_cycles(name, value, tck)
    if "tRTW" not in cyc:
        cyc["tRTW"] = cyc["RL"] + cyc["BL"] + 2 - cyc["WL"]
    if "tRC" not in overrides:
        # Rounding tRAS and tRP up separately can exceed the rounded tRC (HBM2E: 55 + 23 > 77).
        cyc["tRC"] = max(cyc["tRC"], cyc["tRAS"] + cyc["tRP"])
    if "tREFIpb" not in cyc:
        cyc["tREFIpb"] = max(1, cyc["tREFI"] // (org["sids"] * org["bank_groups"] * org["banks_per_group"]))

    for name in TIMING_NAMES:
        check_int(name, cyc[name], lo=1 if name in _MIN_ONE else 0, hi=1 << 20)
    _consistency(cyc)
    return HBMTiming(preset=preset.name, data_rate_gbps=preset.data_rate_gbps, clock_ns=tck,
                     dq_bits=preset.dq_bits, burst_length=preset.burst_length,
                     columns=preset.columns, **org, **cyc)


def _consistency(c):
    """Relations any real device satisfies; an override that breaks one is a mistake."""
    rules = (
        ("tRC", c["tRC"] >= c["tRAS"] + c["tRP"], f"must be at least tRAS + tRP = {c['tRAS'] + c['tRP']}"),
        ("tCCD_S", c["tCCD_S"] >= c["BL"], f"must be at least BL = {c['BL']} (data-bus occupancy)"),
        ("tCCD_L", c["tCCD_L"] >= c["tCCD_S"], f"must be at least tCCD_S = {c['tCCD_S']}"),
        ("tCCD_R", c["tCCD_R"] >= c["tCCD_S"], f"must be at least tCCD_S = {c['tCCD_S']}"),
        ("tRRD_L", c["tRRD_L"] >= c["tRRD_S"], f"must be at least tRRD_S = {c['tRRD_S']}"),
        ("tWTR_L", c["tWTR_L"] >= c["tWTR_S"], f"must be at least tWTR_S = {c['tWTR_S']}"),
        ("tRTW", c["tRTW"] >= c["RL"] + c["BL"] - c["WL"],
         f"must be at least RL + BL - WL = {c['RL'] + c['BL'] - c['WL']} (read and write data would collide)"),
        ("tREFI", c["tREFI"] > c["tRFC"], f"must exceed tRFC = {c['tRFC']}"),
        ("tRFCpb", c["tRFCpb"] <= c["tRFC"], f"must be at most tRFC = {c['tRFC']}"),
    )
    for name, ok, message in rules:
        if not ok:
            raise ConfigError(name, message)
