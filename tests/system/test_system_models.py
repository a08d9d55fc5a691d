"""Topology, placement, power, thermal and perf models against hand-computed numbers."""

import os
import random

import networkx as nx
import numpy as np
import pytest

from diestack.packaging import perf, placement, power, thermal, topology
from diestack.packaging.system import default_system
from diestack.packaging.tech import load_tech

TECH = load_tech()


def seed():
    s = int(os.environ.get("DIESTACK_SEED", random.randrange(2**32)))
    print(f"seed={s}")
    return s


def graph(edges, nodes, lat=1.0, relay=True):
    g = nx.Graph()
    for n in nodes:
        g.add_node(n, kind="compute", latency_ns=lat, relay=relay if not callable(relay) else relay(n))
    for u, v, bw in edges:
        g.add_edge(u, v, bw_gbs=bw, latency_ns=2.0)
    return g


# ---- topology --------------------------------------------------------------------------------

def test_line_of_three_by_hand():
    b = 100.0
    g = graph([("A", "B", b), ("B", "C", b)], "ABC")
    tr = topology.traffic_pattern(g, "all_to_all_compute")
    assert len(tr) == 6
    r = topology.evaluate_traffic(g, tr)
    # A->B carries A->B and A->C (load 2); likewise every directed link: scale b/2, 6 flows
    assert r["throughput_gbs"] == pytest.approx(3 * b)
    assert r["mean_hops"] == pytest.approx(8 / 6)
    # A->C: 1 (src) + 2 (link) + 1 (relay B) + 2 (link) + 1 (dst) = 7 ns; one-hop flows 4 ns
    assert r["max_latency_ns"] == pytest.approx(7.0)
    assert r["mean_latency_ns"] == pytest.approx((4 * 4 + 2 * 7) / 6)
    # bisection of A-B-C: cutting {A}|{B,C} or {C}|{A,B} cuts one link
    assert topology.bisection_bandwidth(g) == pytest.approx(b)


def test_ring_and_mesh_bisection():
    b = 10.0
    ring = graph([(f"n{i}", f"n{(i + 1) % 4}", b) for i in range(4)], [f"n{i}" for i in range(4)])
    assert topology.bisection_bandwidth(ring) == pytest.approx(2 * b)
    ring8 = graph([(f"n{i}", f"n{(i + 1) % 8}", b) for i in range(8)], [f"n{i}" for i in range(8)])
    assert topology.bisection_bandwidth(ring8) == pytest.approx(2 * b)
    full = graph([(u, v, b) for u in "ABCD" for v in "ABCD" if u < v], "ABCD")
    assert topology.bisection_bandwidth(full) == pytest.approx(4 * b)
    # uniform traffic on K4: every flow is one hop, each directed link carries 1: 12 b
    assert topology.evaluate_traffic(full, topology.traffic_pattern(full, "all_to_all_compute"))[
        "throughput_gbs"] == pytest.approx(12 * b)


def test_non_relay_die_blocks_routes():
    g = graph([("A", "B", 1.0), ("B", "C", 1.0)], "ABC", relay=lambda n: n != "B")
    assert topology.route(g, "A", "C") is None
    r = topology.evaluate_traffic(g, {("A", "C"): 1.0, ("A", "B"): 1.0})
    assert r["unroutable"] == [("A", "C")]
    assert r["throughput_gbs"] == pytest.approx(1.0)


def test_default_system_graph_from_tech():
    s = default_system()
    g = topology.build_graph(s, TECH)
    assert sorted(g.nodes) == ["io", "npu0", "npu1", "npu2", "npu3"]   # stacks are not routed
    assert g.number_of_edges() == 6
    link_bw = 2.0 * TECH.phys["ucie-a"].shoreline_gbyte_s_per_mm    # 2 mm PHYs
    for _, _, e in g.edges(data=True):
        assert e["bw_gbs"] == pytest.approx(link_bw)
        assert e["length_mm"] == pytest.approx(1.0)
    # ring npu0-npu1-npu3-npu2 plus io on npu2, npu3: best balanced cut {npu0, npu1} | rest
    # cuts npu0-npu2 and npu1-npu3 -> 2 links
    assert topology.bisection_bandwidth(g) == pytest.approx(2 * link_bw)
    summ = topology.summary(s, TECH)
    assert summ["diameter_hops"] == 2
    assert summ["uniform"]["unroutable"] == 0


# ---- placement ---------------------------------------------------------------------------------

def test_default_placement_numbers():
    s = default_system()
    assert placement.violations(s, TECH) == []
    for link in s.links:
        assert placement.link_length_mm(s, link) == pytest.approx(1.0)
    for h in s.hbm:
        gap, overlap, problem = placement.hbm_gap_mm(s, h)
        assert problem is None and gap == pytest.approx(1.0)
        assert overlap == pytest.approx(6.0 - (3.0 - 2.935))   # PHY spans 24..30 vs 23.935..29.935


def test_rotation_maps_edges_and_points():
    s = default_system()
    npu1 = s.die("npu1")                 # rotated 180: local W (HBM) faces east
    assert npu1.edge("W") == "E" and npu1.edge("N") == "S"
    x, y = npu1.phy_center("hbm")
    assert (x, y) == pytest.approx((npu1.x + npu1.w, npu1.y + 6.0))
    from dataclasses import replace
    d90 = replace(s.die("npu0"), rotation=90)
    assert d90.edge("N") == "W" and d90.edge("E") == "N"
    assert (d90.w, d90.h) == (12.0, 11.0)
    # local (0, 0) -> the bounding box's lower-right corner after a 90-degree CCW turn
    assert d90.to_global(0.0, 0.0) == pytest.approx((d90.x + 12.0, d90.y))


# ---- power ---------------------------------------------------------------------------------

def test_power_activity_linear_and_static():
    s = default_system()
    p0 = power.activity_power(s, TECH, compute=0.0, hbm=0.0, d2d=0.0)
    static = sum(d.chiplet.power_static_w for d in s.dies)
    assert p0["total"]["total"] == pytest.approx(static)
    p1 = power.activity_power(s, TECH)
    ph = power.activity_power(s, TECH, compute=0.5, hbm=0.5, d2d=0.5)
    assert ph["total"]["total"] - static == pytest.approx((p1["total"]["total"] - static) / 2)
    # HBM at full bandwidth: 4 stacks x 819.2 GB/s x 8 bit x 5.5 pJ/bit
    assert p1["total"]["hbm"] == pytest.approx(4 * 819.2e9 * 8 * 5.5e-12)
    # MACs: 4 dies x 32768 MAC/cycle x 1.5 GHz x 0.15 pJ
    assert p1["total"]["compute"] == pytest.approx(4 * 32768 * 1.5e9 * 0.15e-12)
    # D2D: 6 links x 2 directions x 1316 GB/s x 8 x 0.3 pJ/bit
    assert p1["total"]["d2d"] == pytest.approx(6 * 2 * 1316e9 * 8 * 0.3e-12)


# ---- thermal -----------------------------------------------------------------------------------

def test_thermal_uniform_matches_analytic_1d():
    ny, nx, dx = 8, 10, 1e-3
    P = 80.0
    T = thermal.solve_grid(np.full((ny, nx), P / (ny * nx)), np.ones((ny, nx), bool), dx, dx,
                           ambient_c=25.0)
    area = ny * nx * dx * dx
    # hand: r_convec + chip half + TIM + spreader, all in series (adiabatic bottom)
    r = 0.1 + (0.01 * 150e-6 / 2 + 0.25 * 20e-6 + 0.0025 * 1e-3) / area
    assert r == pytest.approx(thermal.series_resistance_k_per_w(area))
    assert T[thermal.CHIP_LAYER].max() == pytest.approx(25.0 + P * r, rel=1e-7)
    assert T[thermal.CHIP_LAYER].min() == pytest.approx(25.0 + P * r, rel=1e-7)
    # nothing flows down: the substrate sits at the chip temperature
    assert T[0].mean() == pytest.approx(25.0 + P * r, rel=1e-7)


def test_thermal_lateral_conduction_1d_bar():
    """A 1-D silicon bar, heat in one end cell, out through convection spread over all cells:
    with a huge convection resistance the bar is isothermal; the energy balance holds."""
    nx, dx = 40, 0.5e-3
    p = np.zeros((1, nx))
    p[0, 0] = 5.0
    T = thermal.solve_grid(p, np.ones((1, nx), bool), dx, dx, ambient_c=0.0, r_convec=1e4)
    chip = T[thermal.CHIP_LAYER][0]
    assert np.all(np.diff(chip) <= 1e-12)            # monotone away from the source
    assert chip[0] - chip[-1] < 1e-2 * chip.mean()   # nearly isothermal
    assert chip.mean() == pytest.approx(5.0 * 1e4, rel=1e-2)


def test_thermal_default_energy_balance_and_hotspots():
    s = default_system()
    pw = {d.name: (60.0 if d.name == "npu0" else 5.0) for d in s.dies}
    th = thermal.solve_system(s, pw, resolution_mm=1.0, ambient_c=30.0)
    assert th.total_power_w == pytest.approx(sum(pw.values()))
    assert max(th.per_die, key=lambda n: th.per_die[n]["peak_c"]) == "npu0"
    # all heat leaves through r_convec: mean top temperature - ambient ~ P * r_convec
    assert th.peak_c > 30.0 + th.total_power_w * thermal.R_CONVEC_K_PER_W
    hotter = thermal.solve_system(s, {k: 2 * v for k, v in pw.items()}, resolution_mm=1.0,
                                  ambient_c=30.0)
    assert hotter.peak_c - 30.0 == pytest.approx(2 * (th.peak_c - 30.0), rel=1e-6)  # linear


# ---- perf --------------------------------------------------------------------------------------

def tiny(hbm_bw=1e9, p=1, d2d_bw=1e9):
    return perf.Machine(p=p, arrays=1, rows=4, cols=4, clock_hz=1e9, hbm_bw=hbm_bw,
                        d2d_bw=d2d_bw, mac_pj=1.0, sram_pj_bit=0.0, hbm_pj_bit=1.0,
                        d2d_pj_bit=1.0)


def test_gemm_hand_roofline():
    g = perf.Gemm("g", m=64, n=8, k=8)
    r = perf.gemm(tiny(), g)
    # compute: 2 x 2 tiles of 4x4 on one array, 4 rounds x 64 rows = 256 cycles, plus the first
    # weight load (4) and skew/drain (4 + 4 - 2): 266 cycles at 1 GHz
    assert float(r["t_compute_s"]) == pytest.approx(266e-9)
    # HBM: A 64x8 + B 8x8 + C 64x8 bytes = 1088 B at 1 GB/s
    assert float(r["t_hbm_s"]) == pytest.approx(1088e-9)
    assert float(r["time_s"]) == pytest.approx(1088e-9)
    assert perf.BOUNDS[int(r["bound"])] == "hbm"
    # energy: 4096 MACs x 1 pJ + 1088 x 8 bits x 1 pJ
    assert float(r["energy_j"]) == pytest.approx(4096e-12 + 1088 * 8e-12)
    fast = perf.gemm(tiny(hbm_bw=1e12), g)
    assert perf.BOUNDS[int(fast["bound"])] == "compute"
    assert float(fast["time_s"]) == pytest.approx(266e-9)
    # M < R: the 4-cycle weight load is exposed: 4 rounds x max(2, 4) + 10
    small = perf.gemm(tiny(hbm_bw=1e12), perf.Gemm("s", m=2, n=8, k=8))
    assert float(small["t_compute_s"]) == pytest.approx(26e-9)


def test_gemm_split_over_chiplets_d2d_bound():
    g = perf.Gemm("g", m=64, n=64, k=64)
    r = perf.gemm(tiny(hbm_bw=1e15, p=4, d2d_bw=1e6), g)
    # weights sharded (split_n) needs an all-gather of A: 3/4 x 64 x 64 B per chiplet at 1 MB/s;
    # split_m replicates B: no D2D, compute 16 x 16 tiles... pick the faster: split_m
    assert perf.MAPPINGS[int(r["mapping"])] == "split_m"
    r2 = perf.gemm(tiny(hbm_bw=1e15, p=4, d2d_bw=1e15), perf.Gemm("g", m=4, n=64, k=64))
    assert perf.MAPPINGS[int(r2["mapping"])] == "split_n"


def test_gemm_never_beats_the_roofline():
    rng = np.random.default_rng(seed())
    for _ in range(200):
        m, n, k = (int(x) for x in rng.integers(1, 3000, 3))
        p = int(rng.choice([1, 2, 4, 8]))
        mc = perf.Machine(p=p, arrays=int(rng.integers(1, 64)), rows=16, cols=16,
                          clock_hz=1e9, hbm_bw=float(rng.uniform(1e10, 1e12)),
                          d2d_bw=float(rng.uniform(1e10, 1e12)), mac_pj=0.1, sram_pj_bit=0.1,
                          hbm_pj_bit=5.0, d2d_pj_bit=0.5)
        r = perf.gemm(mc, perf.Gemm("g", m, n, k))
        t = float(r["time_s"])
        peak = 2.0 * mc.arrays * 256 * 1e9 * p
        assert t >= 2.0 * m * n * k / peak * (1 - 1e-12), (m, n, k, p)
        # every operand byte crosses some chiplet's HBM at least once
        assert t >= (m * k + k * n + m * n) / (p * mc.hbm_bw) * (1 - 1e-12), (m, n, k, p)


def test_decode_is_bandwidth_bound_like_real_systems():
    s = default_system()
    mc = perf.machine_from_system(s, TECH)
    t = perf.Transformer(name="dec", phase="decode", d_model=4096, n_heads=32, d_ff=16384,
                         n_layers=32, seq_len=2048, batch=8)
    out = perf.workload_report(mc, [t])["dec"]
    assert out["bound"] == "hbm"
    weights = 4 * 4096**2 + 2 * 4096 * 16384            # int8 bytes per layer
    kv = 2 * 8 * 2048 * 4096
    bw = 4 * 819.2e9
    expect = 8 / (32 * (weights + kv) / bw)
    assert out["tokens_per_s"] == pytest.approx(expect, rel=0.02)


def test_roofline_of_default():
    mc = perf.machine_from_system(default_system(), TECH)
    rf = perf.roofline(mc)
    assert float(rf["system"]["peak_ops"]) == pytest.approx(4 * 2 * 32768 * 1.5e9)
    assert float(rf["system"]["hbm_bw"]) == pytest.approx(4 * 819.2e9)
    assert float(rf["chiplet"]["ridge_ops_per_byte"]) == pytest.approx(98.304e12 / 819.2e9)
    big = perf.workload_report(mc, [perf.Gemm("g", 4096, 4096, 4096)])["g"]
    assert big["bound"] == "compute"
    # 4096^3 split over N on 4 chiplets: 256 x 64 tiles of 16x16 per chiplet on 128 arrays =
    # 128 rounds x 4096 rows, + 2R + C - 2 = 46 fill/drain cycles
    assert big["utilization"] == pytest.approx(128 * 4096 / (128 * 4096 + 46))


def test_two_vs_four_chiplets():
    """The 2-chiplet reference has half the compute and HBM of the 4-chiplet one."""
    from diestack.packaging.system import DEFAULT_PATH, load_system
    two = load_system(DEFAULT_PATH.parent / "two_npu.toml")
    four = default_system()
    m2, m4 = (perf.machine_from_system(s, TECH) for s in (two, four))
    assert float(m4.peak_ops) == pytest.approx(2 * float(m2.peak_ops))
    t = perf.Transformer(name="dec", phase="decode")
    r2, r4 = (perf.workload_report(m, [t])["dec"]["tokens_per_s"] for m in (m2, m4))
    assert r4 == pytest.approx(2 * r2, rel=0.02)       # HBM-bound: twice the stacks
    g2 = topology.build_graph(two, TECH)
    # 3-node triangle npu0-npu1, io-npu0, io-npu1: any 1|2 split cuts two links
    assert topology.bisection_bandwidth(g2) == pytest.approx(
        2 * 2.0 * TECH.phys["ucie-a"].shoreline_gbyte_s_per_mm)


def test_single_array_matches_npu_md_ws_formula():
    """npu.md "Limits": double-buffered WS on R x C takes about
    R + ceil(K/R) ceil(N/C) max(M, R) + (R + C - 2) cycles; its example GEMM 128x256x512
    (M, N, K) on 16x16 gives 16 + 32 x 16 x 128 + 30 = 65,582 (ideal 65,536)."""
    mc = perf.Machine(p=1, arrays=1, rows=16, cols=16, clock_hz=1e9, hbm_bw=1e18, d2d_bw=1e18,
                      mac_pj=0.0, sram_pj_bit=0.0, hbm_pj_bit=0.0, d2d_pj_bit=0.0)
    r = perf.gemm(mc, perf.Gemm("g", m=128, n=256, k=512))
    assert float(r["cycles"]) == 65582
