"""Cost and yield of chiplet systems: Chiplet Actuary's model, vectorised with numpy.

Formulas are Chiplet Actuary's (Feng & Ma, DAC 2022) exactly as system.md §1.2 gives them,
with its known defects (system.md "Known defects") fixed:

1. **µbump cost per die.** One code path in CA adds the µbump cost once per chip *type*; here
   every die pays ``area x bump_cost_per_mm2`` (this is what CA's published outputs and the
   golden numbers correspond to).
2. **Assembly flow of the Si interposer.** CA's SI package is always chip-last although it prints
   "chip-first". Here the flow is an explicit field of every package (``assembly`` in
   packages.toml), the formula used follows that field, and the result reports it.
3. **Advanced-package NRE.** CA adds a recurring $/mm² substrate term (``area x 0.005``) to the
   FO/SI package NRE by mistake; it is not added here.
4. **alpha.** CA hard-codes the clustering parameter alpha = 10 for logic (CATCH uses 2,
   RapidChiplet 1). Every function here takes ``alpha`` (scalar or array); the node's TOML
   value is only the default. (system.md calls 10 "optimistic"; at fixed D0 a smaller alpha
   gives a *higher* yield, so 10 is the pessimistic, near-Poisson end; what matters is that
   alpha and D0 are fitted together.)

Extensions (not in CA; parameters in packages.toml, marked [assumption] there): a ``bridge``
package (EMIB / CoWoS-L class: dies on an organic substrate joined by n-1 embedded Si bridges)
and a ``hybrid-3d`` package (dies hybrid-bonded in one stack, die-to-wafer chip-last).

Model summary (A in mm², D0 in defects/cm²)
-------------------------------------------
* die yield ``Y = (1 + D0/100 * A / alpha) ** -alpha`` (negative binomial)
* dies per wafer ``N = pi (d/2 - e)^2 / S - pi (d - 2e) / sqrt(2 S)``, ``S = A + 2 s sqrt(A) + s^2``
* raw die ``C_wafer / N``; KGD ``C_wafer / (N Y)``; defect cost = KGD - raw
* raw chips = sum over dies (raw die + A x bump $/mm²); defect chips = sum (KGD - raw)
* organic: package area ``4 x sum A``, raw package ``area x 0.005 x f`` (f: 1 single die, 1.5 if
  area <= 17x17, 1.75 if <= 30x30, else 2); with ``y = 0.99^n``: defect package =
  ``raw_pkg (1/y - 1)``, wasted KGD = ``chips (1/y - 1)``
* interposer (FO, SI): ``A_ip = k sum A``, ``y1`` = interposer yield, ``C_ip = W_ip / N(A_ip) +
  A_ip x 0.005``, ``C_sub = 4 A_ip x 0.005``, ``y2 = bond^n``, ``y3 = 0.99``;
  chip-last: defect pkg = ``C_ip (1/(y1 y2 y3) - 1) + C_sub (1/y3 - 1)``, wasted KGD =
  ``chips (1/(y2 y3) - 1)`` (interposer defects are caught before the KGD are bonded);
  chip-first: defect pkg = ``C_ip (1/(y1 y3) - 1) + C_sub (1/y3 - 1)``, wasted KGD =
  ``chips (1/(y1 y3) - 1)``
* recurring total = raw chips + defect chips + raw package + defect package + wasted KGD
* NRE: module ``A_m x 0.5 NRE_node/300`` (a D2D PHY module is charged as a 20 mm² module), chip
  ``A x 0.3 NRE_node/300 + 0.2 NRE_node``, package per packages.toml; each NRE item is divided
  by the total volume of the systems that use it (:func:`family_nre`), so chiplets reused across
  a product family share their NRE.

API for callers (all array arguments broadcast together; scalars give 0-d arrays)
---------------------------------------------------------------------------------
``die_yield(area_mm2, d0_per_cm2, alpha) -> ndarray``
``dies_per_wafer(area_mm2, diameter_mm=300, edge_loss_mm=5, scribe_mm=0.2) -> ndarray``
``die_cost(node, area_mm2, alpha=None, tech=None) -> dict``
    keys ``die_yield, dies_per_wafer, raw_die_cost, kgd_cost_per_die, defect_cost_per_die``.
``recurring_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead=0.10, alpha=None,
                 tech=None, extra_dies=0, extra_die_area_mm2=0.0, extra_die_cost=0.0) -> dict``
    ``n_chiplets`` identical chiplets of ``logic_area/n x (1 + d2d_overhead)`` mm² each (no D2D
    area when n = 1: a monolithic die); ``package`` a name (``"organic"``, ``"fanout-chip-first"``,
    ``"fanout-chip-last"``, ``"interposer"``, ``"bridge"``, ``"hybrid-3d"``), an array of names,
    or an array of integer codes from :func:`package_codes`. ``extra_*`` are bought known-good
    dies (e.g. HBM stacks: count, area each, price each) placed in the same package: they
    enlarge it, are bonded with the others, and are wasted by a failed assembly.
    Keys: ``die_area_mm2, die_yield, dies_per_wafer, raw_die_cost, kgd_cost_per_die,
    defect_cost_per_die, n_dies, package_area_mm2, interposer_area_mm2, interposer_yield,
    assembly_yield, raw_chips, defect_chips, raw_package, defect_package, wasted_kgd,
    chips_cost, package_cost, total_recurring_cost, limit_area_mm2, over_limit``.
    ``package_cost`` is CA's ``cost_package()``: raw + defect package + wasted KGD.
``system_recurring_cost(dies, package, alpha=None, tech=None) -> dict``
    A heterogeneous system: ``dies`` is a list of ``(node, area_mm2, count)`` for fabricated
    dies, or ``(None, area_mm2, count, price_usd)`` for bought KGD; same keys (scalars).
``nre_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead=0.10, tech=None) -> dict``
    keys ``module_nre, d2d_nre, chip_nre, package_nre, total_nre``.
``total_cost(node, logic_area_mm2, n_chiplets, package, volume, family_volume=None, ...) -> dict``
    recurring keys plus the NRE keys, ``nre_per_unit`` (chiplet design NRE / family_volume +
    package NRE / volume) and ``total_cost_per_unit``.
``family_nre(designs, systems) -> dict``: NRE per unit of each system of a product family.
"""

import numpy as np

from ..hdl.common.params import ConfigError
from .tech import load_tech

__all__ = ["die_yield", "dies_per_wafer", "die_cost", "recurring_cost", "system_recurring_cost",
           "nre_cost", "total_cost", "family_nre", "package_codes", "node_params",
           "BREAKDOWN", "D2D_MODULE_AREA_MM2"]

# The five terms of CA's cost_RE(), in order.
BREAKDOWN = ("raw_chips", "defect_chips", "raw_package", "defect_package", "wasted_kgd")
# system.md §1.2 NRE: "A D2D module is charged as a 20 mm^2 module".
D2D_MODULE_AREA_MM2 = 20.0
# system.md §1.2 NRE: module 0.5, chip 0.3 x NRE_node / 300 per mm^2; chip fixed 0.2 x NRE_node.
MODULE_NRE_FACTOR = 0.5
CHIP_NRE_FACTOR = 0.3
CHIP_NRE_FIXED = 0.2
NRE_REF_AREA_MM2 = 300.0

_KIND_CODE = {"organic": 0, "interposer": 1, "bridge": 2, "stack": 3}


# ---- primitives -------------------------------------------------------------------------------

def die_yield(area_mm2, d0_per_cm2, alpha):
    """Negative-binomial die yield ``(1 + D0/100 * A / alpha) ** -alpha`` (D0 per cm², A in mm²)."""
    a = np.asarray(alpha, dtype=float)
    return (1.0 + np.asarray(d0_per_cm2, dtype=float) / 100.0 * np.asarray(area_mm2, dtype=float) / a) ** -a


def dies_per_wafer(area_mm2, diameter_mm=300.0, edge_loss_mm=5.0, scribe_mm=0.2):
    """Gross dies per wafer (fractional, as CA): ``pi (d/2-e)^2 / S - pi (d-2e) / sqrt(2S)``."""
    a = np.asarray(area_mm2, dtype=float)
    s = a + 2.0 * scribe_mm * np.sqrt(a) + scribe_mm ** 2
    return np.pi * (diameter_mm / 2.0 - edge_loss_mm) ** 2 / s - np.pi * (diameter_mm - 2.0 * edge_loss_mm) / np.sqrt(2.0 * s)


def _dpw(tech, area):
    w = tech.wafer
    return dies_per_wafer(area, w.diameter_mm, w.edge_loss_mm, w.scribe_mm)


# ---- parameter look-up (vectorised) -----------------------------------------------------------

_NODE_TABLES = {}
_PKG_TABLES = {}


def node_params(node, tech=None, field="node"):
    """Per-element node parameters: dict of arrays ``d0``, ``wafer``, ``nre``, ``alpha``.

    ``node`` is an int (nm), a string (``"7nm"``), or an integer array. Unknown nodes raise
    ``ConfigError(field, "unknown node '4nm'; known: ...")``.
    """
    tech = tech or load_tech()
    if isinstance(node, str) or np.ndim(node) == 0 and not isinstance(node, np.ndarray):
        n = tech.node(node, field=field)
        return {"d0": np.asarray(n.d0_per_cm2), "wafer": np.asarray(n.wafer_cost_usd),
                "nre": np.asarray(n.nre_usd), "alpha": np.asarray(n.alpha)}
    tab = _NODE_TABLES.get(id(tech))
    if tab is None or tab[0] is not tech:
        size = max(tech.nodes) + 1
        t = np.full((4, size), np.nan)
        for nm, n in tech.nodes.items():
            t[:, nm] = (n.d0_per_cm2, n.wafer_cost_usd, n.nre_usd, n.alpha)
        tab = (tech, t)
        _NODE_TABLES[id(tech)] = tab
    t = tab[1]
    arr = np.asarray(node)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:   # strings ("7nm") or odd values: resolve each distinct one through tech.node
            uniq, inv = np.unique(arr.astype(str), return_inverse=True)
            lut = np.array([tech.node(str(u), field=field).nm for u in uniq], dtype=np.int64)
            arr = lut[inv].reshape(arr.shape)
    ok = (arr >= 0) & (arr < t.shape[1])
    idx = np.where(ok, arr, 0)
    vals = t[:, idx]
    bad = ~ok | np.isnan(vals[0])
    if np.any(bad):
        tech.node(int(arr[bad].reshape(-1)[0]), field=field)   # raises with the known list
    return {"d0": vals[0], "wafer": vals[1], "nre": vals[2], "alpha": vals[3]}


_PKG_FIELDS = ("kind", "chip_last", "bond_yield", "bump", "sub_cost", "sub_scale", "sub_layer",
               "sub_bond", "max_area", "nre_mm2", "nre_fixed", "f_single", "th0", "th1", "f0",
               "f1", "f2", "ip_scale", "ip_wafer", "ip_d0", "ip_alpha", "ip_bump", "bridge_area",
               "sub_nre_mm2")


def _pkg_table(tech):
    tab = _PKG_TABLES.get(id(tech))
    if tab is not None and tab[0] is tech:
        return tab[1], tab[2]
    names = tuple(tech.packages)
    rows = []
    for name in names:
        p = tech.package(name)
        th = tuple(p.layer_factor_thresholds_mm2) + (np.inf, np.inf)
        fs = tuple(p.layer_factors) or (p.substrate_layer_factor,)
        fs = fs + (fs[-1],) * (3 - len(fs))
        if len(p.layer_factors) > 3:
            raise ConfigError(f"packages.{name}.layer_factors", "at most 3 layer factors are supported")
        rows.append((_KIND_CODE[p.kind], 1.0 if p.chip_last else 0.0, p.bond_yield,
                     p.bump_cost_per_mm2, p.substrate_cost_per_mm2, p.substrate_area_scale,
                     p.substrate_layer_factor, p.substrate_bond_yield, p.max_area_mm2,
                     p.nre_per_mm2, p.nre_fixed, p.layer_factor_single, th[0], th[1],
                     fs[0], fs[1], fs[2], p.interposer_area_scale, p.interposer_wafer_cost_usd,
                     p.interposer_d0_per_cm2, p.interposer_alpha, p.interposer_bump_cost_per_mm2,
                     p.bridge_area_mm2, p.substrate_nre_per_mm2))
    t = np.array(rows, dtype=float).T.copy()
    _PKG_TABLES[id(tech)] = (tech, names, t)
    return names, t


def package_codes(package, tech=None, field="package"):
    """Integer codes for package names (for fast sweeps); returns ``(codes, names)``.

    ``names[code]`` is the package name. Arrays of codes pass through (range-checked).
    """
    tech = tech or load_tech()
    names, _ = _pkg_table(tech)
    if isinstance(package, str):
        tech.package(package, field=field)
        return np.asarray(names.index(package)), names
    arr = np.asarray(package)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
            raise ConfigError(field, f"package code out of range 0..{len(names) - 1}")
        return arr, names
    uniq, inv = np.unique(arr.astype(str), return_inverse=True)
    lut = np.array([names.index(tech.package(str(u), field=field).name) for u in uniq], dtype=np.int64)
    return lut[inv].reshape(arr.shape), names


def _pkg_params(package, tech, field="package"):
    codes, _ = package_codes(package, tech, field)
    _, t = _pkg_table(tech)
    vals = t[:, codes]
    return dict(zip(_PKG_FIELDS, vals))


# ---- die cost ---------------------------------------------------------------------------------

def die_cost(node, area_mm2, alpha=None, tech=None):
    """Yield, dies per wafer, raw and KGD cost of a die of ``area_mm2`` on ``node``.

    Returns a dict of arrays: ``die_yield``, ``dies_per_wafer``, ``raw_die_cost`` (wafer / N),
    ``kgd_cost_per_die`` (wafer / (N Y)), ``defect_cost_per_die`` (KGD - raw).
    """
    tech = tech or load_tech()
    np_ = node_params(node, tech)
    area = np.asarray(area_mm2, dtype=float)
    if np.any(~(area > 0)):
        raise ConfigError("area_mm2", "die area must be > 0")
    a = np_["alpha"] if alpha is None else _check_alpha(alpha)
    y = die_yield(area, np_["d0"], a)
    n = _dpw(tech, area)
    if np.any(n <= 0):
        raise ConfigError("area_mm2", "die too large: fewer than one die per wafer")
    raw = np_["wafer"] / n
    kgd = raw / y
    return {"die_yield": y, "dies_per_wafer": n, "raw_die_cost": raw,
            "kgd_cost_per_die": kgd, "defect_cost_per_die": kgd - raw}


def _check_alpha(alpha):
    a = np.asarray(alpha, dtype=float)
    if np.any(~(a > 0)) or np.any(~np.isfinite(a)):
        raise ConfigError("alpha", "clustering parameter alpha must be a finite number > 0")
    return a


# ---- package assembly (the five terms) --------------------------------------------------------

def _assemble(P, tech, sum_area, max_area, n_dies, chips_raw, chips_defect, bump_area):
    """The five-term breakdown for packages ``P`` (dict of arrays from ``_pkg_params``).

    ``sum_area``: total die area in the package; ``max_area``: largest die; ``n_dies``: dies
    bonded; ``chips_raw``/``chips_defect``: sums over dies before bumps; ``bump_area``: area of
    the fabricated dies that receive bumps (bought KGD come bumped).
    """
    kind = P["kind"]
    is_org, is_ip, is_br, is_st = (kind == 0), (kind == 1), (kind == 2), (kind == 3)
    n = np.asarray(n_dies, dtype=float)
    raw_chips = chips_raw + bump_area * P["bump"]
    chips = raw_chips + chips_defect

    # organic (CA OS)
    org_area = P["sub_scale"] * sum_area
    f = np.where(org_area <= P["th0"], P["f0"], np.where(org_area <= P["th1"], P["f1"], P["f2"]))
    f = np.where(n <= 1, P["f_single"], f)

    # silicon: interposer (FO/SI) or n-1 bridges; none for organic / stack
    ip_area = np.where(is_ip, P["ip_scale"] * sum_area, 0.0)
    n_br = np.where(is_br, np.maximum(n - 1.0, 0.0), 0.0)
    si_unit = np.where(is_ip, ip_area, np.where(is_br, P["bridge_area"], 1.0))
    si_unit = np.maximum(si_unit, 1e-9)
    y_unit = die_yield(si_unit, P["ip_d0"], P["ip_alpha"])
    # An interposer larger than the wafer gives N <= 0 (CA's formula goes negative): cost inf.
    n_si = _dpw(tech, si_unit)
    c_unit = np.where(n_si > 0, P["ip_wafer"] / np.where(n_si > 0, n_si, 1.0), np.inf) \
        + si_unit * P["ip_bump"]
    c_ip = np.where(is_ip, c_unit, n_br * np.where(is_br, c_unit, 0.0))
    y1 = np.where(is_ip, y_unit, np.where(is_br, y_unit ** n_br, 1.0))
    bridges_area = n_br * P["bridge_area"]

    # substrate
    sub_basis = np.where(is_ip, ip_area, np.where(is_st, max_area, sum_area))
    sub_area = P["sub_scale"] * sub_basis
    layer = np.where(is_org, f, P["sub_layer"])
    c_sub = sub_area * P["sub_cost"] * layer

    n_bonds = np.where(is_st, np.maximum(n - 1.0, 0.0), n)
    y2 = P["bond_yield"] ** n_bonds
    y3 = P["sub_bond"]

    chip_last = P["chip_last"] > 0.5
    # organic: CA's OS: (1/0.99^n - 1) on package and chips (y1 = y3 = 1 there).
    # advanced chip-last: interposer tested before the KGD are bonded.
    # advanced chip-first: RDL built on the placed dies; bonding yield not applied (CA).
    y_pkg = np.where(chip_last, y1 * y2 * y3, y1 * y3)
    y_kgd = np.where(chip_last, y2 * y3, y1 * y3)
    raw_package = c_ip + c_sub
    defect_package = np.where(is_org, c_sub * (1.0 / y2 - 1.0),
                              c_ip * (1.0 / y_pkg - 1.0) + c_sub * (1.0 / y3 - 1.0))
    wasted = np.where(is_org, chips * (1.0 / y2 - 1.0), chips * (1.0 / y_kgd - 1.0))
    assembly_yield = np.where(is_org, y2, y_pkg)

    limit_area = np.where(is_org, sub_area, np.where(is_ip, ip_area,
                          np.where(is_br, sum_area, max_area)))
    total = raw_chips + chips_defect + raw_package + defect_package + wasted
    return {"n_dies": n, "package_area_mm2": sub_area,
            "interposer_area_mm2": np.where(is_br, bridges_area, ip_area),
            "interposer_yield": y1, "assembly_yield": assembly_yield,
            "raw_chips": raw_chips, "defect_chips": chips_defect + 0.0 * n,
            "raw_package": raw_package, "defect_package": defect_package, "wasted_kgd": wasted,
            "chips_cost": raw_chips + chips_defect,
            "package_cost": raw_package + defect_package + wasted,
            "total_recurring_cost": total,
            "limit_area_mm2": limit_area, "over_limit": limit_area > P["max_area"]}


def _check_counts(n, field):
    a = np.asarray(n)
    if a.dtype.kind == "f":
        if np.any(a != np.round(a)):
            raise ConfigError(field, "must be an integer")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu":
        raise ConfigError(field, "must be an integer")
    return a


def recurring_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead=0.10, alpha=None,
                   tech=None, extra_dies=0, extra_die_area_mm2=0.0, extra_die_cost=0.0):
    """Recurring cost of ``n_chiplets`` identical chiplets holding ``logic_area_mm2`` of logic.

    Vectorised: every argument may be an array (they broadcast). See the module docstring for
    the returned keys. Each chiplet is ``logic/n x (1 + d2d_overhead)`` mm²; a single die
    (n = 1) is monolithic and carries no D2D area. With the CA defaults this reproduces the
    golden outputs of system.md (e.g. 7 nm, 100 mm², organic: total $20.59).
    """
    tech = tech or load_tech()
    logic = np.asarray(logic_area_mm2, dtype=float)
    if np.any(~(logic > 0)) or np.any(~np.isfinite(logic)):
        raise ConfigError("logic_area_mm2", "logic area must be a finite number > 0")
    n = _check_counts(n_chiplets, "n_chiplets")
    if np.any(n < 1):
        raise ConfigError("n_chiplets", "must be at least 1")
    ov = np.asarray(d2d_overhead, dtype=float)
    if np.any(~(ov >= 0)) or np.any(ov > 10):
        raise ConfigError("d2d_overhead", "must be in [0, 10]")
    ex_n = _check_counts(extra_dies, "extra_dies")
    if np.any(ex_n < 0):
        raise ConfigError("extra_dies", "must be >= 0")
    ex_a = np.asarray(extra_die_area_mm2, dtype=float)
    ex_c = np.asarray(extra_die_cost, dtype=float)
    if np.any(~(ex_a >= 0)) or np.any(~np.isfinite(ex_a)):
        raise ConfigError("extra_die_area_mm2", "bought dies need a finite area >= 0")
    if np.any(~(ex_c >= 0)) or np.any(~np.isfinite(ex_c)):
        raise ConfigError("extra_die_cost", "bought dies need a finite cost >= 0")

    nf = n.astype(float)
    die_area = logic / nf * np.where(n > 1, 1.0 + ov, 1.0)
    d = die_cost(node, die_area, alpha, tech)
    P = _pkg_params(package, tech)
    exf = ex_n.astype(float)
    sum_area = nf * die_area + exf * ex_a
    max_area = np.maximum(die_area, np.where(ex_n > 0, ex_a, 0.0))
    r = _assemble(P, tech, sum_area, max_area, nf + exf,
                  chips_raw=nf * d["raw_die_cost"] + exf * ex_c,
                  chips_defect=nf * d["defect_cost_per_die"],
                  bump_area=nf * die_area)
    r.update(d)
    r["die_area_mm2"] = die_area * np.ones_like(r["total_recurring_cost"])
    return r


def system_recurring_cost(dies, package, alpha=None, tech=None):
    """Recurring cost of one heterogeneous system (scalar).

    ``dies``: list of ``(node, area_mm2, count)`` for fabricated dies (any node from
    nodes.toml) and ``(None, area_mm2, count, price_usd)`` for bought known-good dies (HBM
    stacks). Returns the same keys as :func:`recurring_cost` (floats), plus ``dies``: one dict
    per entry with its ``die_yield``, ``kgd_cost_per_die`` (bought: the price).
    """
    tech = tech or load_tech()
    if not dies:
        raise ConfigError("dies", "a system needs at least one die")
    sum_area = max_area = n_tot = raw = defect = bump_area = 0.0
    per = []
    for i, entry in enumerate(dies):
        if len(entry) not in (3, 4):
            raise ConfigError(f"dies[{i}]", "expected (node, area_mm2, count[, price_usd])")
        node, area, count = entry[:3]
        if not (isinstance(area, (int, float)) and area > 0):
            raise ConfigError(f"dies[{i}].area_mm2", f"must be > 0, not {area!r}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ConfigError(f"dies[{i}].count", f"must be an integer >= 1, not {count!r}")
        if node is None:
            price = entry[3] if len(entry) == 4 else None
            if not isinstance(price, (int, float)) or price < 0:
                raise ConfigError(f"dies[{i}].price_usd", "a bought die needs a price >= 0")
            raw += count * price
            per.append({"node": None, "area_mm2": area, "count": count, "die_yield": 1.0,
                        "kgd_cost_per_die": float(price)})
        else:
            tech.node(node, field=f"dies[{i}].node")
            d = die_cost(node, area, alpha, tech)
            raw += count * float(d["raw_die_cost"])
            defect += count * float(d["defect_cost_per_die"])
            bump_area += count * area
            per.append({"node": node, "area_mm2": area, "count": count,
                        **{k: float(v) for k, v in d.items()}})
        sum_area += count * area
        max_area = max(max_area, area)
        n_tot += count
    P = _pkg_params(package, tech)
    r = _assemble(P, tech, np.asarray(sum_area), np.asarray(max_area), n_tot,
                  np.asarray(raw), np.asarray(defect), np.asarray(bump_area))
    out = {k: (bool(v) if k == "over_limit" else float(v)) for k, v in r.items()}
    out["dies"] = per
    return out


# ---- NRE ---------------------------------------------------------------------------------------

def nre_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead=0.10, tech=None):
    """One-off design cost (system.md §1.2 NRE; CA defect 3 fixed). Vectorised.

    Returns ``module_nre`` (the logic module: ``A_m x 0.5 NRE_node/300``), ``d2d_nre`` (a D2D
    PHY module charged as 20 mm², only when n > 1), ``chip_nre`` (one chiplet design:
    ``A x 0.3 NRE_node/300 + 0.2 NRE_node``), ``package_nre`` and ``total_nre``. All chiplets
    are one design, so its NRE is paid once.
    """
    tech = tech or load_tech()
    np_ = node_params(node, tech)
    logic = np.asarray(logic_area_mm2, dtype=float)
    if np.any(~(logic > 0)):
        raise ConfigError("logic_area_mm2", "logic area must be > 0")
    n = _check_counts(n_chiplets, "n_chiplets")
    if np.any(n < 1):
        raise ConfigError("n_chiplets", "must be at least 1")
    nf = n.astype(float)
    multi = n > 1
    module_area = logic / nf
    die_area = module_area * np.where(multi, 1.0 + np.asarray(d2d_overhead, dtype=float), 1.0)
    per_mm2 = np_["nre"] / NRE_REF_AREA_MM2
    module = module_area * MODULE_NRE_FACTOR * per_mm2
    d2d = np.where(multi, D2D_MODULE_AREA_MM2 * MODULE_NRE_FACTOR * per_mm2, 0.0)
    chip = die_area * CHIP_NRE_FACTOR * per_mm2 + CHIP_NRE_FIXED * np_["nre"]

    P = _pkg_params(package, tech)
    geo = _assemble(P, tech, nf * die_area, die_area, nf, np.zeros_like(die_area),
                    np.zeros_like(die_area), np.zeros_like(die_area))
    kind = P["kind"]
    sub = geo["package_area_mm2"]
    # organic: A_pkg x 3000 x f + 3e5 (f: same layer factor as the recurring cost)
    f = np.where(nf <= 1, P["f_single"], np.where(sub <= P["th0"], P["f0"],
                 np.where(sub <= P["th1"], P["f1"], P["f2"])))
    pkg_org = sub * P["nre_mm2"] * f + P["nre_fixed"]
    # interposer: A_ip x factor + fixed (no recurring $/mm^2 term: defect 3)
    pkg_ip = geo["interposer_area_mm2"] * P["nre_mm2"] + P["nre_fixed"]
    # bridge: one bridge design + substrate; stack: substrate
    pkg_br = P["bridge_area"] * P["nre_mm2"] + P["nre_fixed"] + sub * P["sub_nre_mm2"]
    pkg_st = sub * P["nre_mm2"] + P["nre_fixed"]
    package_nre = np.select([kind == 0, kind == 1, kind == 2], [pkg_org, pkg_ip, pkg_br], pkg_st)
    return {"module_nre": module + 0.0 * package_nre, "d2d_nre": d2d + 0.0 * package_nre,
            "chip_nre": chip + 0.0 * package_nre, "package_nre": package_nre,
            "total_nre": module + d2d + chip + package_nre}


def total_cost(node, logic_area_mm2, n_chiplets, package, volume, family_volume=None,
               d2d_overhead=0.10, alpha=None, tech=None, **extra):
    """Recurring cost plus NRE amortised over volume (vectorised).

    ``volume``: units of this system. ``family_volume``: units of every system of the product
    family that reuses this chiplet (>= volume; default = volume). The chiplet's module, D2D and
    chip NRE are divided by ``family_volume``; the package NRE (specific to this system) by
    ``volume``.
    """
    tech = tech or load_tech()
    vol = np.asarray(volume, dtype=float)
    if np.any(~(vol >= 1)):
        raise ConfigError("volume", "must be at least 1")
    fam = vol if family_volume is None else np.asarray(family_volume, dtype=float)
    if np.any(~(fam >= vol)):
        raise ConfigError("family_volume", "must be at least the system's own volume")
    r = recurring_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead, alpha, tech, **extra)
    nre = nre_cost(node, logic_area_mm2, n_chiplets, package, d2d_overhead, tech)
    r.update(nre)
    chiplet_nre = nre["module_nre"] + nre["d2d_nre"] + nre["chip_nre"]
    r["nre_per_unit"] = chiplet_nre / fam + nre["package_nre"] / vol
    r["total_cost_per_unit"] = r["total_recurring_cost"] + r["nre_per_unit"]
    return r


def family_nre(designs, systems):
    """NRE per unit for each system of a product family (CA's apportioned NRE).

    ``designs``: ``{name: nre_usd}`` for every module, chip and package design.
    ``systems``: ``{system: (volume, [design names it uses])}``. Each design's NRE is divided by
    the total volume of the systems that use it; a system's NRE per unit is the sum of its shares.
    """
    users = {}
    for s, (vol, used) in systems.items():
        if not (isinstance(vol, (int, float)) and vol >= 1):
            raise ConfigError(f"systems.{s}.volume", f"must be at least 1, not {vol!r}")
        for d in set(used):
            if d not in designs:
                raise ConfigError(f"systems.{s}", f"unknown design {d!r}")
            users[d] = users.get(d, 0.0) + vol
    return {s: float(sum(designs[d] / users[d] for d in set(used)))
            for s, (vol, used) in systems.items()}
