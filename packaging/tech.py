"""Technology data: process nodes, package technologies, D2D PHYs and HBM generations.

The numbers live in TOML files under ``packaging/data/`` (each value cites its source there);
this module turns them into frozen dataclasses, validating every field. A bad file raises
:class:`~diestack.hdl.common.params.ConfigError` naming the dotted field
(``packages.interposer.bond_yield: must be at most 1, not 1.2``).

Usage::

    from diestack.packaging.tech import load_tech
    tech = load_tech()                 # the embedded data (cached)
    tech.node(7).wafer_cost_usd        # 9346.0
    tech.node("3nm")                   # Node(nm=3, ...)
    tech.node(4)                       # ConfigError("node", "unknown node '4nm'; known: 3nm, 5nm, ...")
    tech.package("interposer").bond_yield
    tech.phy("ucie-a").shoreline_gbyte_s_per_mm
    tech.hbm("hbm3").gbyte_s_per_stack
    tech.reticle_mm2                   # 858.0

``load_tech(directory)`` reads another folder holding the same four files (``nodes.toml``,
``packages.toml``, ``phys.toml``, ``hbm.toml``); a file missing there is taken from the
embedded data.
"""

import dataclasses
import functools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..hdl.common.params import ConfigError, check_choice, check_int, check_number

__all__ = ["Wafer", "Node", "Package", "Phy", "HbmGen", "Tech", "load_tech", "DATA_DIR",
           "PACKAGE_KINDS", "ASSEMBLY_FLOWS"]

DATA_DIR = Path(__file__).parent / "data"
PACKAGE_KINDS = ("organic", "interposer", "bridge", "stack")
ASSEMBLY_FLOWS = ("chip-first", "chip-last")


def _num(lo=None, hi=None, lo_open=False, default=dataclasses.MISSING):
    """A float field with bounds, checked by ``_validate``."""
    return field(default=default, metadata={"kind": "number", "lo": lo, "hi": hi,
                                            "lo_open": lo_open})


def _validate(obj, prefix):
    """Check every field of a tech dataclass against its metadata; errors name ``prefix.field``."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        value = getattr(obj, f.name)
        name = f"{prefix}.{f.name}"
        if meta.get("kind") == "number":
            v = check_number(name, value, lo=meta["lo"], hi=meta["hi"], lo_open=meta["lo_open"])
            if math.isinf(v):
                raise ConfigError(name, "must be finite")
            object.__setattr__(obj, f.name, v)
        elif meta.get("kind") == "int":
            object.__setattr__(obj, f.name, check_int(name, value, lo=meta.get("lo"), hi=meta.get("hi")))


@dataclass(frozen=True)
class Wafer:
    """Wafer geometry for dies per wafer (system.md §1.2)."""
    diameter_mm: float = _num(lo=0, lo_open=True)
    edge_loss_mm: float = _num(lo=0)
    scribe_mm: float = _num(lo=0)
    _where: str = field(default="wafer", repr=False, compare=False)

    def __post_init__(self):
        _validate(self, self._where)
        if 2 * self.edge_loss_mm >= self.diameter_mm:
            raise ConfigError(f"{self._where}.edge_loss_mm", "edge loss leaves no usable wafer")


@dataclass(frozen=True)
class Node:
    """A logic process node: defect density, wafer price, NRE of a 300 mm^2 chip, clustering alpha."""
    nm: int = field(metadata={"kind": "int", "lo": 1, "hi": 1000})
    d0_per_cm2: float = _num(lo=0)
    wafer_cost_usd: float = _num(lo=0, lo_open=True)
    nre_usd: float = _num(lo=0)
    alpha: float = _num(lo=0, lo_open=True)
    _where: str = field(default="node", repr=False, compare=False)

    def __post_init__(self):
        _validate(self, self._where)


@dataclass(frozen=True)
class Package:
    """A package technology (see packaging/data/packages.toml for every field's meaning)."""
    name: str
    kind: str
    assembly: str
    bond_yield: float = _num(lo=0, hi=1, lo_open=True)
    bump_cost_per_mm2: float = _num(lo=0)
    substrate_cost_per_mm2: float = _num(lo=0)
    substrate_area_scale: float = _num(lo=0, lo_open=True)
    substrate_layer_factor: float = _num(lo=0, lo_open=True)
    substrate_bond_yield: float = _num(lo=0, hi=1, lo_open=True)
    max_area_mm2: float = _num(lo=0, lo_open=True)
    nre_per_mm2: float = _num(lo=0)
    nre_fixed: float = _num(lo=0)
    # organic only
    layer_factor_single: float = _num(lo=0, default=1.0)
    layer_factor_thresholds_mm2: tuple = ()
    layer_factors: tuple = ()
    # interposer / bridge
    interposer_area_scale: float = _num(lo=0, default=0.0)
    interposer_wafer_cost_usd: float = _num(lo=0, default=0.0)
    interposer_d0_per_cm2: float = _num(lo=0, default=0.0)
    interposer_alpha: float = _num(lo=0, lo_open=True, default=1.0)
    interposer_bump_cost_per_mm2: float = _num(lo=0, default=0.0)
    bridge_area_mm2: float = _num(lo=0, default=0.0)
    substrate_nre_per_mm2: float = _num(lo=0, default=0.0)
    _where: str = field(default="package", repr=False, compare=False)

    def __post_init__(self):
        w = self._where
        _validate(self, w)
        check_choice(f"{w}.kind", self.kind, PACKAGE_KINDS)
        check_choice(f"{w}.assembly", self.assembly, ASSEMBLY_FLOWS)
        if self.kind == "organic":
            th, fs = tuple(self.layer_factor_thresholds_mm2), tuple(self.layer_factors)
            if len(fs) != len(th) + 1:
                raise ConfigError(f"{w}.layer_factors",
                                  f"needs one more entry than layer_factor_thresholds_mm2 "
                                  f"({len(th) + 1}), has {len(fs)}")
            th = tuple(check_number(f"{w}.layer_factor_thresholds_mm2[{i}]", v, lo=0)
                       for i, v in enumerate(th))
            if list(th) != sorted(th):
                raise ConfigError(f"{w}.layer_factor_thresholds_mm2", "must be increasing")
            fs = tuple(check_number(f"{w}.layer_factors[{i}]", v, lo=0, lo_open=True)
                       for i, v in enumerate(fs))
            object.__setattr__(self, "layer_factor_thresholds_mm2", th)
            object.__setattr__(self, "layer_factors", fs)
        if self.kind == "interposer":
            for f in ("interposer_area_scale", "interposer_wafer_cost_usd"):
                if getattr(self, f) <= 0:
                    raise ConfigError(f"{w}.{f}", "required (> 0) for an interposer package")
            if self.interposer_area_scale < 1:
                raise ConfigError(f"{w}.interposer_area_scale",
                                  f"an interposer must cover its dies (>= 1), not {self.interposer_area_scale:g}")
        if self.kind == "bridge":
            for f in ("bridge_area_mm2", "interposer_wafer_cost_usd"):
                if getattr(self, f) <= 0:
                    raise ConfigError(f"{w}.{f}", "required (> 0) for a bridge package")

    @property
    def chip_last(self):
        return self.assembly == "chip-last"


@dataclass(frozen=True)
class Phy:
    """A D2D PHY: per-direction shoreline bandwidth (or areal for 3D), energy, latency, reach."""
    name: str
    shoreline_gbyte_s_per_mm: float = _num(lo=0)
    areal_gbyte_s_per_mm2: float = _num(lo=0)
    rate_gbps: float = _num(lo=0, lo_open=True)
    pj_per_bit: float = _num(lo=0, lo_open=True)
    latency_ns: float = _num(lo=0)
    reach_mm: float = _num(lo=0)
    bump_pitch_um: float = _num(lo=0, lo_open=True)
    packages: tuple = ()
    _where: str = field(default="phy", repr=False, compare=False)

    def __post_init__(self):
        _validate(self, self._where)
        if self.shoreline_gbyte_s_per_mm <= 0 and self.areal_gbyte_s_per_mm2 <= 0:
            raise ConfigError(f"{self._where}.shoreline_gbyte_s_per_mm",
                              "a PHY needs a shoreline or an areal bandwidth > 0")
        pk = tuple(self.packages)
        if not pk:
            raise ConfigError(f"{self._where}.packages", "list at least one package kind")
        for i, k in enumerate(pk):
            check_choice(f"{self._where}.packages[{i}]", k, PACKAGE_KINDS)
        object.__setattr__(self, "packages", pk)

    def bandwidth_gbyte_s(self, shoreline_mm):
        """Per-direction bandwidth of ``shoreline_mm`` of die edge (numpy-friendly)."""
        return self.shoreline_gbyte_s_per_mm * shoreline_mm


@dataclass(frozen=True)
class HbmGen:
    """An HBM generation: bus width, pin rate, capacity, energy, cost, footprint."""
    name: str
    bus_bits: int = field(metadata={"kind": "int", "lo": 1})
    pin_gbps: float = _num(lo=0, lo_open=True)
    capacity_gb: float = _num(lo=0, lo_open=True)
    pj_per_bit: float = _num(lo=0, lo_open=True)
    cost_usd: float = _num(lo=0)
    width_mm: float = _num(lo=0, lo_open=True)
    height_mm: float = _num(lo=0, lo_open=True)
    _where: str = field(default="hbm", repr=False, compare=False)

    def __post_init__(self):
        _validate(self, self._where)

    @property
    def gbyte_s_per_stack(self):
        """Peak bandwidth of one stack at ``pin_gbps``: bus_bits x pin rate / 8 (hbm.md §1.1)."""
        return self.bus_bits * self.pin_gbps / 8.0

    def stack_gbyte_s(self, pin_gbps=None):
        """Bandwidth of one stack at another pin rate (e.g. a product's derated rate)."""
        return self.bus_bits * (self.pin_gbps if pin_gbps is None else pin_gbps) / 8.0

    @property
    def area_mm2(self):
        return self.width_mm * self.height_mm


@dataclass(frozen=True)
class Tech:
    """All technology data. Look-ups raise ConfigError naming the kind (``node``, ``package``...)."""
    wafer: Wafer
    reticle_w_mm: float
    reticle_h_mm: float
    nodes: dict
    packages: dict
    phys: dict
    hbms: dict

    @property
    def reticle_mm2(self):
        return self.reticle_w_mm * self.reticle_h_mm

    @property
    def node_nms(self):
        return tuple(sorted(self.nodes))

    def node(self, nm, field="node"):
        """The :class:`Node` for ``nm`` (int, or text like ``"7"``, ``"7nm"``, ``"N7"``)."""
        key = _node_key(nm)
        if key not in self.nodes:
            shown = f"{nm}nm" if key is not None and not str(nm).lower().endswith("nm") else str(nm)
            known = ", ".join(f"{n}nm" for n in self.node_nms)
            raise ConfigError(field, f"unknown node '{shown}'; known: {known}")
        return self.nodes[key]

    def package(self, name, field="package"):
        return _lookup(self.packages, name, field, "package")

    def phy(self, name, field="phy"):
        return _lookup(self.phys, name, field, "PHY")

    def hbm(self, name, field="hbm"):
        return _lookup(self.hbms, name, field, "HBM generation")


def _node_key(nm):
    if isinstance(nm, bool):
        return None
    if isinstance(nm, (int, float)) and float(nm).is_integer():
        return int(nm)
    try:
        import numpy as np
        if isinstance(nm, np.integer):
            return int(nm)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(nm, str):
        t = nm.strip().lower().removesuffix("nm").removeprefix("n").strip()
        if t.isdigit():
            return int(t)
    return None


def _lookup(table, name, field, what):
    if not isinstance(name, str) or name not in table:
        raise ConfigError(field, f"unknown {what} {name!r}; known: {', '.join(table)}")
    return table[name]


# ---- loading ----------------------------------------------------------------------------------

def _read(directory, fname):
    path = Path(directory) / fname
    if not path.exists():
        path = DATA_DIR / fname
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(fname, f"bad TOML: {e}") from None
    except OSError as e:
        raise ConfigError(fname, f"cannot read {path}: {e.strerror}") from None


def _table(doc, key, fname):
    if key not in doc:
        raise ConfigError(f"{fname}:{key}", "missing table")
    t = doc[key]
    if not isinstance(t, dict):
        raise ConfigError(f"{fname}:{key}", "must be a table")
    return t


def _build(cls, raw, where, **extra):
    """Instantiate ``cls`` from a TOML table: unknown keys and missing fields name the field."""
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    for k in raw:
        if k not in names or k in extra:
            allowed = ", ".join(sorted(names - set(extra)))
            raise ConfigError(f"{where}.{k}", f"unknown key; allowed: {allowed}")
    for k in sorted(required - set(extra)):
        if k not in raw:
            raise ConfigError(f"{where}.{k}", "missing")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**extra, **kw, _where=where)


def _check_strings(raw, where, keys):
    for k in keys:
        if k in raw and not isinstance(raw[k], str):
            raise ConfigError(f"{where}.{k}", f"must be a string, not {raw[k]!r}")


@functools.lru_cache(maxsize=8)
def _load_cached(directory):
    return _load(directory)


def load_tech(directory=None):
    """Load and validate the technology data (embedded ``packaging/data`` by default; cached)."""
    return _load_cached(str(Path(directory).resolve()) if directory is not None else str(DATA_DIR))


def _load(directory):
    nodes_doc = _read(directory, "nodes.toml")
    for k in nodes_doc:
        if k not in ("wafer", "nodes"):
            raise ConfigError(f"nodes.toml:{k}", "unknown table; allowed: wafer, nodes")
    wafer = _build(Wafer, _table(nodes_doc, "wafer", "nodes.toml"), "wafer")
    nodes = {}
    for key, raw in _table(nodes_doc, "nodes", "nodes.toml").items():
        nm = _node_key(key)
        if nm is None:
            raise ConfigError(f"nodes.{key}", "node names must be integers (nm)")
        nodes[nm] = _build(Node, raw, f"nodes.{key}", nm=nm)
    if not nodes:
        raise ConfigError("nodes", "no nodes defined")

    pk_doc = _read(directory, "packages.toml")
    for k in pk_doc:
        if k not in ("reticle", "packages"):
            raise ConfigError(f"packages.toml:{k}", "unknown table; allowed: reticle, packages")
    ret = _table(pk_doc, "reticle", "packages.toml")
    for k in ret:
        if k not in ("width_mm", "height_mm"):
            raise ConfigError(f"reticle.{k}", "unknown key; allowed: height_mm, width_mm")
    rw = check_number("reticle.width_mm", ret.get("width_mm"), lo=0, lo_open=True)
    rh = check_number("reticle.height_mm", ret.get("height_mm"), lo=0, lo_open=True)
    packages = {}
    for name, raw in _table(pk_doc, "packages", "packages.toml").items():
        _check_strings(raw, f"packages.{name}", ("kind", "assembly"))
        packages[name] = _build(Package, raw, f"packages.{name}", name=name)

    phy_doc = _read(directory, "phys.toml")
    phys = {name: _build(Phy, raw, f"phys.{name}", name=name)
            for name, raw in _table(phy_doc, "phys", "phys.toml").items()}
    hbm_doc = _read(directory, "hbm.toml")
    hbms = {name: _build(HbmGen, raw, f"hbm.{name}", name=name)
            for name, raw in _table(hbm_doc, "hbm", "hbm.toml").items()}
    return Tech(wafer=wafer, reticle_w_mm=rw, reticle_h_mm=rh, nodes=nodes, packages=packages,
                phys=phys, hbms=hbms)
