"""Cost model: Chiplet Actuary golden outputs (system.md), an independent scalar reference of the
advanced-package formulas, properties (hypothesis) and vectorised throughput."""

import math
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from diestack.hdl.common.params import ConfigError
from diestack.packaging import cost
from diestack.packaging.tech import load_tech

TECH = load_tech()
SEED = int(os.environ.get("DIESTACK_SEED", "20261130"))

# system.md "Golden outputs to reproduce (Chiplet Actuary defaults, run here)".
# (case, node, logic area, chiplets, key, expected); 0.1% tolerance.
GOLDEN = [
    ("7nm-100-mono", 7, 100, 1, "die_yield", 0.9143),
    ("7nm-100-mono", 7, 100, 1, "dies_per_wafer", 571.71),
    ("7nm-100-mono", 7, 100, 1, "kgd_cost_per_die", 17.88),
    ("7nm-100-mono", 7, 100, 1, "total_recurring_cost", 20.59),
    ("7nm-800-mono", 7, 800, 1, "die_yield", 0.4989),
    ("7nm-800-mono", 7, 800, 1, "dies_per_wafer", 58.79),
    ("7nm-800-mono", 7, 800, 1, "raw_die_cost", 158.96),
    ("7nm-800-mono", 7, 800, 1, "kgd_cost_per_die", 318.60),
    ("7nm-800-mono", 7, 800, 1, "total_recurring_cost", 342.02),
    ("5nm-800-4chiplets", 5, 800, 4, "die_area_mm2", 220.0),
    ("5nm-800-4chiplets", 5, 800, 4, "die_yield", 0.7873),
    ("5nm-800-4chiplets", 5, 800, 4, "kgd_cost_per_die", 86.50),
    ("5nm-800-4chiplets", 5, 800, 4, "total_recurring_cost", 401.42),
    ("5nm-800-mono", 5, 800, 1, "total_recurring_cost", 698.58),
]


@pytest.mark.parametrize("case,node,area,n,key,expected", GOLDEN,
                         ids=[f"{g[0]}:{g[4]}" for g in GOLDEN])
def test_golden_chiplet_actuary(case, node, area, n, key, expected):
    r = cost.recurring_cost(node, area, n, "organic")
    got = float(r[key])
    assert got == pytest.approx(expected, rel=1e-3), f"{case} {key}: {got} vs golden {expected}"


def test_golden_saving_vs_monolithic():
    # system.md: 4 chiplets $401.42 is -42.5% vs monolithic $698.58
    chip = float(cost.recurring_cost(5, 800, 4, "organic")["total_recurring_cost"])
    mono = float(cost.recurring_cost(5, 800, 1, "organic")["total_recurring_cost"])
    assert (chip / mono - 1) * 100 == pytest.approx(-42.5, abs=0.1)


def test_hand_check_800():
    # system.md hand check: S = 811.35; N = pi 145^2 / 811.35 - pi 290 / sqrt(1622.7) = 58.79
    S = 800 + 0.4 * math.sqrt(800) + 0.04
    assert S == pytest.approx(811.35, abs=0.01)
    assert float(cost.dies_per_wafer(800)) == pytest.approx(
        math.pi * 145 ** 2 / S - math.pi * 290 / math.sqrt(2 * S), rel=1e-12)


# ---- independent scalar reference of system.md §1.2, written from the text -------------------

def _ref(node, logic, n, pkg, d2d=0.10, alpha=10.0):
    nd = {5: (0.11, 16988.0), 7: (0.09, 9346.0), 3: (0.20, 30000.0)}[node]
    A = logic / n * (1 + d2d if n > 1 else 1)

    def Y(a, d0, al):
        return (1 + d0 / 100 * a / al) ** (-al)

    def N(a):
        S = a + 2 * 0.2 * math.sqrt(a) + 0.04
        return math.pi * 145 ** 2 / S - math.pi * 290 / math.sqrt(2 * S)

    raw = nd[1] / N(A)
    kgd = nd[1] / (N(A) * Y(A, nd[0], alpha))
    if pkg == "organic":
        pa = 4 * n * A
        f = 1 if n == 1 else (1.5 if pa <= 289 else 1.75 if pa <= 900 else 2)
        rc, dc, rp = n * (raw + A * 0.005), n * (kgd - raw), pa * 0.005 * f
        b = 1 / 0.99 ** n - 1
        return [rc, dc, rp, rp * b, (rc + dc) * b]
    k, wip, d0ip, aip, by = {"fanout-chip-first": (1.2, 1200, 0.05, 3, 0.98),
                             "fanout-chip-last": (1.2, 1200, 0.05, 3, 0.98),
                             "interposer": (1.1, 1937, 0.06, 6, 0.95)}[pkg]
    aip_ = k * n * A
    y1, y2, y3 = Y(aip_, d0ip, aip), by ** n, 0.99
    cip = wip / N(aip_) + aip_ * 0.005
    csub = 4 * aip_ * 0.005
    rc, dc = n * (raw + A * 0.01), n * (kgd - raw)    # ubump per DIE (defect 1 fixed)
    if pkg == "fanout-chip-first":
        dp = cip * (1 / (y1 * y3) - 1) + csub * (1 / y3 - 1)
        w = (rc + dc) * (1 / (y1 * y3) - 1)
    else:
        dp = cip * (1 / (y1 * y2 * y3) - 1) + csub * (1 / y3 - 1)
        w = (rc + dc) * (1 / (y2 * y3) - 1)
    return [rc, dc, cip + csub, dp, w]


@pytest.mark.parametrize("pkg", ["organic", "fanout-chip-first", "fanout-chip-last", "interposer"])
@pytest.mark.parametrize("node,logic,n", [(7, 100, 1), (5, 800, 4), (3, 400, 2), (7, 600, 8)])
def test_against_scalar_reference(pkg, node, logic, n):
    r = cost.recurring_cost(node, logic, n, pkg)
    ref = _ref(node, logic, n, pkg)
    got = [float(r[k]) for k in cost.BREAKDOWN]
    np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=f"{pkg} {node}nm {logic}mm2 x{n}")
    assert float(r["total_recurring_cost"]) == pytest.approx(sum(ref), rel=1e-12)


def test_alpha_parameter_changes_yield():
    hi = float(cost.recurring_cost(7, 800, 1, "organic")["die_yield"])
    lo = float(cost.recurring_cost(7, 800, 1, "organic", alpha=1.0)["die_yield"])
    assert lo == pytest.approx(1 / (1 + 0.0009 * 800), rel=1e-12)   # alpha=1: 1/(1+D0 A)
    # more clustering (smaller alpha) leaves more dies defect-free: yield rises as alpha falls
    assert lo > hi
    ref = _ref(7, 800, 1, "organic", alpha=2.0)
    r = cost.recurring_cost(7, 800, 1, "organic", alpha=2.0)
    assert float(r["total_recurring_cost"]) == pytest.approx(sum(ref), rel=1e-12)


def test_si_is_chip_last_and_flow_is_data():
    # CA defect 2: the SI package is chip-last; here that is the data field that drives the formula
    assert TECH.package("interposer").assembly == "chip-last"
    assert TECH.package("fanout-chip-first").assembly == "chip-first"


def test_nre_formulas():
    # system.md §1.2: a 300 mm^2 SoC's module + chip NRE equals NRE_node
    r = cost.nre_cost(7, 300, 1, "organic")
    assert float(r["module_nre"] + r["chip_nre"]) == pytest.approx(2.98e8, rel=1e-12)
    assert float(r["d2d_nre"]) == 0
    # organic package: A_pkg * 3000 * f + 3e5 with f = 1 for one die
    assert float(r["package_nre"]) == pytest.approx(1200 * 3000 + 3e5)
    # SI: A_ip * 1.2 (0.3 NRE_55 / 300) + 1.2 * 0.2 NRE_55, no A_pkg * 0.005 term (defect 3)
    r = cost.nre_cost(5, 800, 4, "interposer")
    a_ip = 1.1 * 880
    assert float(r["package_nre"]) == pytest.approx(a_ip * 1.2 * 0.3 * 2.8e7 / 300 + 1.2 * 0.2 * 2.8e7)
    assert float(r["d2d_nre"]) == pytest.approx(20 * 0.5 * 5.42e8 / 300)
    # FO: A_ip (0.5 1.5e7 / 300) + 0.5 1.5e7 / 300
    r = cost.nre_cost(5, 800, 4, "fanout-chip-last")
    assert float(r["package_nre"]) == pytest.approx(1.2 * 880 * 25000 + 25000)


def test_nre_amortisation_and_family_reuse():
    one = cost.total_cost(5, 800, 4, "organic", volume=1e5)
    fam = cost.total_cost(5, 800, 4, "organic", volume=1e5, family_volume=1e6)
    chiplet = float(one["module_nre"] + one["d2d_nre"] + one["chip_nre"])
    assert float(one["nre_per_unit"]) == pytest.approx((chiplet + float(one["package_nre"])) / 1e5)
    assert float(fam["nre_per_unit"]) == pytest.approx(chiplet / 1e6 + float(one["package_nre"]) / 1e5)
    # CA apportioning: design NRE / total volume of the systems that use it
    per = cost.family_nre({"chiplet": 100.0, "pkgA": 10.0, "pkgB": 30.0},
                          {"A": (1, ["chiplet", "pkgA"]), "B": (3, ["chiplet", "pkgB"])})
    assert per == pytest.approx({"A": 100 / 4 + 10, "B": 100 / 4 + 10})
    with pytest.raises(ConfigError) as e:
        cost.total_cost(5, 800, 4, "organic", volume=10, family_volume=5)
    assert e.value.field == "family_volume"


def test_system_recurring_matches_homogeneous():
    a = cost.recurring_cost(5, 800, 4, "interposer")
    b = cost.system_recurring_cost([(5, 220.0, 4)], "interposer")
    for k in cost.BREAKDOWN:
        assert b[k] == pytest.approx(float(a[k]), rel=1e-12)
    # bought KGD (HBM): raw cost only, no defect, bonded with the rest
    c = cost.system_recurring_cost([(5, 220.0, 4), (None, 121.0, 4, 320.0)], "interposer")
    assert c["defect_chips"] == pytest.approx(b["defect_chips"])
    assert c["raw_chips"] == pytest.approx(b["raw_chips"] + 4 * 320.0)
    assert c["wasted_kgd"] > b["wasted_kgd"]
    d = cost.recurring_cost(5, 800, 4, "interposer", extra_dies=4, extra_die_area_mm2=121.0,
                            extra_die_cost=320.0)
    assert float(d["total_recurring_cost"]) == pytest.approx(c["total_recurring_cost"], rel=1e-12)


def test_over_limit_flag():
    r = cost.recurring_cost(5, np.array([800.0, 3000.0]), 4, "interposer")
    assert list(r["over_limit"]) == [False, True]


def test_interposer_larger_than_wafer_costs_inf_not_negative():
    # 72,600 mm^2 of interposer: CA's dies-per-wafer formula goes negative; cost must not
    r = cost.recurring_cost(7, np.array([800.0, 60000.0]), np.array([4, 100]), "interposer")
    assert float(cost.dies_per_wafer(1.1 * 66000)) < 0
    assert np.isfinite(r["total_recurring_cost"][0]) and r["total_recurring_cost"][1] == np.inf
    assert list(r["over_limit"]) == [False, True]


@pytest.mark.parametrize("kw,field", [
    (dict(node=4), "node"), (dict(node="3nm", package="ceramic"), "package"),
    (dict(logic_area_mm2=-1), "logic_area_mm2"), (dict(n_chiplets=0), "n_chiplets"),
    (dict(alpha=0), "alpha"), (dict(d2d_overhead=-0.1), "d2d_overhead"),
    (dict(node=np.array([5, 6])), "node"),
    (dict(extra_dies=2, extra_die_area_mm2=-1.0), "extra_die_area_mm2"),
    (dict(extra_dies=2, extra_die_area_mm2=100.0, extra_die_cost=-5.0), "extra_die_cost")])
def test_bad_input_names_field(kw, field):
    args = dict(node=5, logic_area_mm2=800, n_chiplets=4, package="organic")
    args.update(kw)
    with pytest.raises(ConfigError) as e:
        cost.recurring_cost(**args)
    assert e.value.field == field
    if field == "node":
        assert "known: 3nm, 5nm" in str(e.value)


# ---- properties ---------------------------------------------------------------------------------

PKGS = tuple(TECH.packages)
nodes = st.sampled_from(TECH.node_nms)
areas = st.floats(1.0, 3000.0)
alphas = st.floats(0.2, 50.0)


@settings(max_examples=60, deadline=None)
@given(node=nodes, area=areas, alpha=alphas)
def test_yield_in_unit_interval_and_kgd_above_raw(node, area, alpha):
    d = cost.die_cost(node, area, alpha=alpha)
    y = float(d["die_yield"])
    assert 0 < y <= 1
    assert float(d["kgd_cost_per_die"]) >= float(d["raw_die_cost"]) > 0


@settings(max_examples=60, deadline=None)
@given(node=nodes, a=st.floats(5.0, 1500.0), da=st.floats(1.0, 500.0), n=st.integers(1, 8),
       pkg=st.sampled_from(PKGS), alpha=alphas)
def test_cost_monotone_in_area(node, a, da, n, pkg, alpha):
    r = cost.recurring_cost(node, np.array([a, a + da]), n, pkg, alpha=alpha)
    t = r["total_recurring_cost"]
    assert t[1] > t[0], f"{pkg} {node}nm x{n}: {t}"
    assert np.all(r["die_yield"][1] <= r["die_yield"][0])
    for k in cost.BREAKDOWN:
        assert np.all(r[k] >= 0), k


@settings(max_examples=60, deadline=None)
@given(node=nodes, a=st.floats(20.0, 1500.0), n=st.integers(1, 8))
def test_chip_last_wastes_no_kgd_on_interposer_defects(node, a, n):
    # chip-last: the interposer is tested before bonding, so its yield y1 does not waste KGD;
    # making the RDL worse changes the defect package term but not the wasted KGD.
    base = cost.recurring_cost(node, a, n, "fanout-chip-last")
    from dataclasses import replace
    t2 = replace(TECH, packages={**TECH.packages, **{
        p: replace(TECH.package(p), interposer_d0_per_cm2=0.5, _where=f"packages.{p}")
        for p in ("fanout-chip-last", "fanout-chip-first")}})
    worse = cost.recurring_cost(node, a, n, "fanout-chip-last", tech=t2)
    assert float(worse["wasted_kgd"]) == pytest.approx(float(base["wasted_kgd"]), rel=1e-12)
    assert float(worse["defect_package"]) > float(base["defect_package"])
    first = cost.recurring_cost(node, a, n, "fanout-chip-first", tech=t2)
    first0 = cost.recurring_cost(node, a, n, "fanout-chip-first")
    assert float(first["wasted_kgd"]) > float(first0["wasted_kgd"])


@settings(max_examples=40, deadline=None)
@given(node=nodes, a=st.floats(5.0, 1500.0), n=st.integers(1, 8), pkg=st.sampled_from(PKGS))
def test_vector_equals_scalar(node, a, n, pkg):
    v = cost.recurring_cost(np.array([node, 7]), np.array([a, 100.0]), np.array([n, 1]),
                            np.array([pkg, "organic"]))
    s = cost.recurring_cost(node, a, n, pkg)
    for k in cost.BREAKDOWN + ("total_recurring_cost", "die_yield"):
        assert float(v[k][0]) == pytest.approx(float(s[k]), rel=1e-12)


def test_throughput_vectorised():
    rng = np.random.default_rng(SEED)
    n = 200_000
    node = rng.choice(TECH.node_nms, n)
    area = rng.uniform(50, 1600, n)
    chips = rng.integers(1, 9, n)
    pkg, _ = cost.package_codes(rng.choice(PKGS, n))
    cost.recurring_cost(node[:10], area[:10], chips[:10], pkg[:10])
    t = time.perf_counter()
    cost.recurring_cost(node, area, chips, pkg)
    cost.nre_cost(node, area, chips, pkg)
    dt = time.perf_counter() - t
    rate = n / dt
    print(f"cost+NRE evaluation: {rate:,.0f} configurations/s (seed {SEED})")
    assert rate >= 10_000, f"{rate:.0f} configurations/s < 10,000 (seed {SEED})"


def test_extension_packages_follow_their_definition():
    # bridge: n-1 Si bridges of bridge_area_mm2 on a 4x substrate with layer factor 2, chip-last
    p = TECH.package("bridge")
    r = cost.recurring_cost(5, 800, 4, "bridge")
    assert float(r["interposer_area_mm2"]) == pytest.approx(3 * p.bridge_area_mm2)
    yb = float(cost.die_yield(p.bridge_area_mm2, p.interposer_d0_per_cm2, p.interposer_alpha))
    assert float(r["interposer_yield"]) == pytest.approx(yb ** 3)
    c_br = p.interposer_wafer_cost_usd / float(cost.dies_per_wafer(p.bridge_area_mm2))
    c_sub = 4 * 880 * 0.005 * p.substrate_layer_factor
    assert float(r["raw_package"]) == pytest.approx(3 * c_br + c_sub)
    chips = float(r["raw_chips"] + r["defect_chips"])
    assert float(r["wasted_kgd"]) == pytest.approx(chips * (1 / p.bond_yield ** 4 - 1))
    # hybrid-3d: footprint = one die, n-1 hybrid bonds, the stack attached with y3
    s = TECH.package("hybrid-3d")
    r = cost.recurring_cost(5, 800, 4, "hybrid-3d")
    assert float(r["package_area_mm2"]) == pytest.approx(4 * 220)
    chips = float(r["raw_chips"] + r["defect_chips"])
    y = s.bond_yield ** 3 * s.substrate_bond_yield
    assert float(r["wasted_kgd"]) == pytest.approx(chips * (1 / y - 1))
    assert bool(r["over_limit"]) is False
