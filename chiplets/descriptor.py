"""Physical chiplet descriptors: size, node, power, PHY positions and (for NPU dies) compute figures.

A descriptor is data (a TOML file, see ``npu.toml``, ``hbm3.toml``, ``io.toml`` beside this
module) loaded into the frozen :class:`Chiplet` dataclass. Every field is validated on load and a
bad value raises :class:`~diestack.hdl.common.params.ConfigError` naming the field, prefixed by
where the descriptor came from (``chiplets.npu.phys[1].edge``).

Geometry conventions (used by placement, topology and thermal):

* A chiplet is a ``width_mm`` x ``height_mm`` rectangle in its own frame, origin at its lower-left
  corner; x grows to the east, y to the north.
* A PHY sits on one edge, ``N`` (y = height), ``S`` (y = 0), ``E`` (x = width) or ``W`` (x = 0).
  ``offset_mm`` is the distance from the edge's start (its west end for N/S, its south end for E/W)
  to the start of the PHY; ``width_mm`` is the PHY's shoreline along the edge.
* A placed chiplet is rotated counter-clockwise by 0/90/180/270 degrees and then translated so
  its rotated bounding box's lower-left corner is at (x, y) (see ``packaging/placement.py``).
"""

from dataclasses import dataclass
from pathlib import Path
import tomllib

from ..hdl.common.params import ConfigError, check_choice, check_int, check_number

__all__ = ["Phy", "ComputeSpec", "MemorySpec", "Chiplet", "chiplet_from_dict", "load_chiplet",
           "check_keys", "check_name", "read_toml",
           "builtin", "BUILTIN", "EDGES", "KINDS"]

EDGES = ("N", "E", "S", "W")
KINDS = ("compute", "memory", "io")
PHY_KINDS = ("d2d", "hbm")
_HERE = Path(__file__).resolve().parent
BUILTIN = {"npu": _HERE / "npu.toml", "hbm3": _HERE / "hbm3.toml", "io": _HERE / "io.toml"}


def check_keys(field_, d, required, optional=()):
    """Reject a non-table, unknown keys and missing keys, naming the field."""
    if not isinstance(d, dict):
        raise ConfigError(field_ or "<root>", f"must be a table, not {type(d).__name__}")
    allowed = set(required) | set(optional)
    for k in d:
        if k not in allowed:
            raise ConfigError(_join(field_, str(k)),
                              f"unknown key; allowed keys are {', '.join(sorted(allowed))}")
    for k in required:
        if k not in d:
            raise ConfigError(_join(field_, k), "missing required field")


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def check_name(field_, v):
    if not isinstance(v, str) or not v or not v.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(field_, f"must be a non-empty name of letters, digits, '-' or '_', not {v!r}")
    return v


@dataclass(frozen=True)
class Phy:
    """A PHY on a chiplet edge.

    ``kind`` is ``d2d`` (a die-to-die PHY whose ``type`` names a PHY in the technology data,
    e.g. ``ucie-a``) or ``hbm`` (an HBM PHY: on a host die, the shoreline facing a stack; on an
    HBM stack, its base-die interface edge).
    """
    name: str
    kind: str
    edge: str
    offset_mm: float
    width_mm: float
    type: str = ""

    def center(self, width, height):
        """Centre of the PHY in the chiplet's own (unrotated) frame, mm."""
        mid = self.offset_mm + self.width_mm / 2
        return {"N": (mid, height), "S": (mid, 0.0), "E": (width, mid), "W": (0.0, mid)}[self.edge]


@dataclass(frozen=True)
class ComputeSpec:
    """Compute figures of an NPU die: ``arrays`` systolic arrays of ``rows`` x ``cols`` MACs.

    ``mac_energy_pj`` is the energy of one MAC including operand movement inside the array;
    ``sram_energy_pj_per_bit`` the on-die SRAM access energy per bit moved.
    """
    arrays: int
    rows: int
    cols: int
    clock_ghz: float
    sram_mib: float
    mac_energy_pj: float
    sram_energy_pj_per_bit: float

    @property
    def macs_per_cycle(self):
        return self.arrays * self.rows * self.cols

    @property
    def peak_ops(self):
        """Peak operations per second (1 MAC = 2 ops)."""
        return 2.0 * self.macs_per_cycle * self.clock_ghz * 1e9

    def rtl_config(self):
        """The RTL NPU configuration (``hdl/npu/config.py``) of one of this die's arrays.

        The die is ``arrays`` copies of that NPU core; the per-array SRAM is split 4:1 between
        scratchpad and accumulator, each rounded down to a power of two KiB (Gemmini's defaults,
        256 KiB + 64 KiB, for the built-in die's 384 KiB per array; npu.md).
        """
        from ..hdl.npu.config import NPUConfig
        per_array_kib = self.sram_mib * 1024 / self.arrays
        pow2 = lambda x: 1 << max(0, int(x).bit_length() - 1)  # noqa: E731
        return NPUConfig(rows=self.rows, cols=self.cols, sp_kib=min(4096, pow2(0.8 * per_array_kib)),
                         acc_kib=min(4096, pow2(0.2 * per_array_kib)))


@dataclass(frozen=True)
class MemorySpec:
    """An HBM stack: interface width, pin rate, capacity and access energy."""
    generation: str
    bus_bits: int
    pin_rate_gbps: float
    capacity_gb: float
    energy_pj_per_bit: float

    @property
    def bandwidth_gbs(self):
        """Peak stack bandwidth, GB/s = pins x Gb/s / 8 (hbm.md §1.1)."""
        return self.bus_bits * self.pin_rate_gbps / 8.0


@dataclass(frozen=True)
class Chiplet:
    """A die's physical descriptor.

    ``power_dynamic_w`` is the die's dynamic power at activity 1 that is *not* counted by the
    event energies (for an NPU: clock tree, control and NoC; MAC and SRAM energy come from
    :class:`ComputeSpec`; for an IO die or an HBM stack: all of its dynamic power apart from the
    HBM/D2D bit energies). ``power_static_w`` is leakage. ``internal_latency_ns`` is the on-die
    traversal latency between a PHY and the die's endpoints (RapidChiplet ``internal_latency``).
    """
    name: str
    kind: str
    width_mm: float
    height_mm: float
    node: int | None
    power_dynamic_w: float
    power_static_w: float
    internal_latency_ns: float = 1.0
    relay: bool = True
    phys: tuple = ()
    compute: ComputeSpec | None = None
    memory: MemorySpec | None = None
    notes: str = ""

    @property
    def area_mm2(self):
        return self.width_mm * self.height_mm

    def phy(self, name):
        for p in self.phys:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def hbm_shoreline_mm(self):
        return sum(p.width_mm for p in self.phys if p.kind == "hbm")


def chiplet_from_dict(d, where="chiplet", *, phy_types=None, nodes=None):
    """Build a :class:`Chiplet` from a TOML table, validating every field.

    ``where`` prefixes field names in errors. ``phy_types`` / ``nodes``: if given, the D2D PHY
    ``type`` and the ``node`` must be among them (names from the technology data).
    """
    check_keys(where, d, ("name", "kind", "width_mm", "height_mm", "power_dynamic_w", "power_static_w"),
          ("node", "internal_latency_ns", "relay", "phys", "compute", "memory", "notes"))
    f = lambda k: _join(where, k)  # noqa: E731
    name = check_name(f("name"), d["name"])
    kind = check_choice(f("kind"), d["kind"], KINDS)
    w = check_number(f("width_mm"), d["width_mm"], lo=0, hi=100, lo_open=True)
    h = check_number(f("height_mm"), d["height_mm"], lo=0, hi=100, lo_open=True)
    node = None
    if "node" in d:
        node = check_int(f("node"), d["node"], lo=1, hi=1000)
        if nodes is not None and node not in nodes:
            raise ConfigError(f("node"), f"unknown process node {node}; known nodes are "
                              f"{', '.join(map(str, sorted(nodes)))}")
    elif kind != "memory":
        raise ConfigError(f("node"), "missing required field (only memory stacks may omit it)")
    pdyn = check_number(f("power_dynamic_w"), d["power_dynamic_w"], lo=0, hi=5000)
    pstat = check_number(f("power_static_w"), d["power_static_w"], lo=0, hi=5000)
    lat = check_number(f("internal_latency_ns"), d.get("internal_latency_ns", 1.0), lo=0, hi=1e4)
    relay = d.get("relay", True)
    if not isinstance(relay, bool):
        raise ConfigError(f("relay"), f"must be true or false, not {relay!r}")
    notes = d.get("notes", "")
    if not isinstance(notes, str):
        raise ConfigError(f("notes"), "must be a string")

    raw_phys = d.get("phys", [])
    if not isinstance(raw_phys, list):
        raise ConfigError(f("phys"), "must be an array of tables")
    phys, names = [], set()
    for i, p in enumerate(raw_phys):
        pw = f"{where}.phys[{i}]"
        check_keys(pw, p, ("name", "kind", "edge", "offset_mm", "width_mm"), ("type",))
        pname = check_name(f"{pw}.name", p["name"])
        if pname in names:
            raise ConfigError(f"{pw}.name", f"duplicate PHY name {pname!r}")
        names.add(pname)
        pkind = check_choice(f"{pw}.kind", p["kind"], PHY_KINDS)
        edge = check_choice(f"{pw}.edge", p["edge"], EDGES)
        off = check_number(f"{pw}.offset_mm", p["offset_mm"], lo=0)
        pwid = check_number(f"{pw}.width_mm", p["width_mm"], lo=0, lo_open=True)
        edge_len = w if edge in "NS" else h
        if off + pwid > edge_len + 1e-9:
            raise ConfigError(f"{pw}.width_mm", f"PHY runs off the {edge} edge: offset {off:g} + "
                              f"width {pwid:g} > edge length {edge_len:g} mm")
        ptype = p.get("type", "")
        if pkind == "d2d":
            if "type" not in p:
                raise ConfigError(f"{pw}.type", "missing required field for a d2d PHY")
            ptype = check_name(f"{pw}.type", ptype)
            if phy_types is not None and ptype not in phy_types:
                raise ConfigError(f"{pw}.type", f"unknown PHY {ptype!r}; known PHYs are "
                                  f"{', '.join(sorted(phy_types))}")
        elif ptype != "" and not isinstance(ptype, str):
            raise ConfigError(f"{pw}.type", "must be a string")
        phys.append(Phy(pname, pkind, edge, off, pwid, str(ptype)))
    # PHYs on the same edge must not overlap
    for a in range(len(phys)):
        for b in range(a + 1, len(phys)):
            pa, pb = phys[a], phys[b]
            if pa.edge == pb.edge and pa.offset_mm < pb.offset_mm + pb.width_mm - 1e-9 \
                    and pb.offset_mm < pa.offset_mm + pa.width_mm - 1e-9:
                raise ConfigError(f"{where}.phys[{b}].offset_mm",
                                  f"PHY {pb.name!r} overlaps PHY {pa.name!r} on edge {pa.edge}")

    compute = memory = None
    if kind == "compute":
        if "compute" not in d:
            raise ConfigError(f("compute"), "missing required table for a compute die")
        c = d["compute"]
        cw = f("compute")
        check_keys(cw, c, ("arrays", "rows", "cols", "clock_ghz", "sram_mib", "mac_energy_pj",
                      "sram_energy_pj_per_bit"))
        compute = ComputeSpec(
            arrays=check_int(f"{cw}.arrays", c["arrays"], lo=1, hi=1 << 20),
            rows=check_int(f"{cw}.rows", c["rows"], lo=1, hi=4096),
            cols=check_int(f"{cw}.cols", c["cols"], lo=1, hi=4096),
            clock_ghz=check_number(f"{cw}.clock_ghz", c["clock_ghz"], lo=0, hi=10, lo_open=True),
            sram_mib=check_number(f"{cw}.sram_mib", c["sram_mib"], lo=0, hi=1 << 20),
            mac_energy_pj=check_number(f"{cw}.mac_energy_pj", c["mac_energy_pj"], lo=0, hi=1e3),
            sram_energy_pj_per_bit=check_number(f"{cw}.sram_energy_pj_per_bit",
                                                c["sram_energy_pj_per_bit"], lo=0, hi=1e3))
    elif "compute" in d:
        raise ConfigError(f("compute"), f"only a compute die has a compute table (kind is {kind!r})")
    if kind == "memory":
        if "memory" not in d:
            raise ConfigError(f("memory"), "missing required table for a memory stack")
        m = d["memory"]
        mw = f("memory")
        check_keys(mw, m, ("generation", "bus_bits", "pin_rate_gbps", "capacity_gb", "energy_pj_per_bit"))
        memory = MemorySpec(
            generation=check_name(f"{mw}.generation", m["generation"]),
            bus_bits=check_int(f"{mw}.bus_bits", m["bus_bits"], lo=1, hi=1 << 16),
            pin_rate_gbps=check_number(f"{mw}.pin_rate_gbps", m["pin_rate_gbps"], lo=0, hi=100,
                                       lo_open=True),
            capacity_gb=check_number(f"{mw}.capacity_gb", m["capacity_gb"], lo=0, hi=1e4, lo_open=True),
            energy_pj_per_bit=check_number(f"{mw}.energy_pj_per_bit", m["energy_pj_per_bit"],
                                           lo=0, hi=1e3))
        if not any(p.kind == "hbm" for p in phys):
            raise ConfigError(f("phys"), "a memory stack needs one PHY of kind 'hbm'")
    elif "memory" in d:
        raise ConfigError(f("memory"), f"only a memory stack has a memory table (kind is {kind!r})")
    return Chiplet(name=name, kind=kind, width_mm=w, height_mm=h, node=node,
                   power_dynamic_w=pdyn, power_static_w=pstat, internal_latency_ns=lat,
                   relay=relay, phys=tuple(phys), compute=compute, memory=memory, notes=notes)


def read_toml(path, field_="file"):
    """Parse a TOML file; a missing file or a syntax error raises ConfigError naming ``field_``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(field_, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(field_, f"is a directory, not a TOML file: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(field_, f"bad TOML in {path}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(field_, f"not a UTF-8 text file: {path}") from None


def load_chiplet(path, where=None, **kw):
    """Load a chiplet descriptor TOML file."""
    where = where or f"chiplets.{Path(path).stem}"
    return chiplet_from_dict(read_toml(path, where), where, **kw)


_cache = {}


def builtin(name, **kw):
    """A built-in descriptor: ``npu`` (NPU compute die), ``hbm3`` (HBM3 stack), ``io`` (IO die)."""
    if name not in BUILTIN:
        raise ConfigError("chiplet", f"unknown built-in chiplet {name!r}; built-ins are "
                          f"{', '.join(sorted(BUILTIN))}")
    if not kw:
        if name not in _cache:
            _cache[name] = load_chiplet(BUILTIN[name], f"chiplets.{name}")
        return _cache[name]
    return load_chiplet(BUILTIN[name], f"chiplets.{name}", **kw)

