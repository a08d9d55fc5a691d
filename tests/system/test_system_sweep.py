"""Design-space sweep: vectorised evaluation vs scalar models, Pareto front, local and Dask."""

import csv

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from diestack.hdl.common.params import ConfigError
from diestack.packaging import cost, perf, sweep
from diestack.packaging.tech import load_tech

TECH = load_tech()
SPEC = {
    "name": "t",
    "space": {"chiplets": [1, 2, 4], "node": [5, 7], "package": ["organic", "interposer", "bridge"],
              "hbm_stacks": [2, 4], "phy": ["ucie-a", "ucie-s"],
              "logic_area_mm2": {"start": 200.0, "stop": 800.0, "num": 4}},
    "workload": {"kind": "decode", "d_model": 1024, "n_heads": 8, "d_ff": 4096, "n_layers": 4,
                 "seq_len": 512, "batch": 4},
    "run": {"chunk": 50},
}


def spec():
    return sweep.spec_from_dict(SPEC, TECH)


def test_spec_size_and_errors():
    s = spec()
    assert s.size == 3 * 2 * 3 * 2 * 2 * 1 * 4
    for bad, field in [
        ({"node": [4]}, "space.node[0]"),
        ({"phy": ["ucie-z"]}, "space.phy[0]"),
        ({"package": ["tape"]}, "space.package[0]"),
        ({"chiplets": [0]}, "space.chiplets[0]"),
        ({"hbm_stacks": []}, "space.hbm_stacks"),
        ({"logic_area_mm2": {"start": -1, "stop": 2, "num": 3}}, "space.logic_area_mm2.start"),
        ({"colour": [1]}, "space.colour"),
    ]:
        d = {**SPEC, "space": {**SPEC["space"], **bad}}
        with pytest.raises(ConfigError) as ei:
            sweep.spec_from_dict(d, TECH)
        assert ei.value.field == field, str(ei.value)


def test_vector_matches_scalar_models():
    s = spec()
    r = sweep.evaluate_chunk(s, 0, s.size, TECH)
    shape = s.shape
    for i in (0, 17, 61, s.size - 1):
        ic, ino, ipk, ist, iph, ihb, ila = np.unravel_index(i, shape)
        n, node = s.axes["chiplets"][ic], s.axes["node"][ino]
        pkg, stacks = s.axes["package"][ipk], s.axes["hbm_stacks"][ist]
        phy, logic = s.axes["phy"][iph], s.axes["logic_area_mm2"][ila]
        hb = TECH.hbms["hbm3"]
        c = cost.total_cost(node, logic, n, pkg, 500000.0, extra_dies=stacks,
                            extra_die_area_mm2=hb.area_mm2, extra_die_cost=hb.cost_usd, tech=TECH)
        assert r["cost_usd"][i] == pytest.approx(float(c["total_cost_per_unit"]), rel=1e-12)
        die = logic / n * (1.1 if n > 1 else 1.0)
        assert r["die_area_mm2"][i] == pytest.approx(die)
        # performance of the same configuration built by hand
        dens, en = sweep.NODE_SCALING[node]
        arrays = max(1.0, np.floor(logic * sweep.MACS_PER_MM2_7NM * dens / n / 256))
        bw_mesh, hops = sweep.mesh_factors(n)
        link = TECH.phys[phy].shoreline_gbyte_s_per_mm * 0.25 * np.sqrt(die) * 1e9
        mc = perf.Machine(p=n, arrays=arrays, rows=16, cols=16, clock_hz=1.5e9,
                          hbm_bw=stacks * hb.gbyte_s_per_stack / n * 1e9, d2d_bw=bw_mesh * link,
                          mac_pj=0.15 * en, sram_pj_bit=0.1 * en, hbm_pj_bit=hb.pj_per_bit,
                          d2d_pj_bit=TECH.phys[phy].pj_per_bit, d2d_hops=hops,
                          static_w=die * n * 8 / 132 + stacks * 2.0, other_w=die * n * 15 / 132)
        w = s.workload
        one = perf.run_ops(mc, perf.transformer_ops(w), repeat=w.n_layers)
        assert r["throughput"][i] == pytest.approx(w.tokens() / float(one["time_s"]), rel=1e-12)
        assert r["energy_j"][i] == pytest.approx(float(one["energy_j"]), rel=1e-12)


def test_feasibility_reasons():
    s = spec()
    r = sweep.evaluate_chunk(s, 0, s.size, TECH)
    pk = np.array(s.axes["package"])[r["package"]]
    phy = np.array(s.axes["phy"])[r["phy"]]
    # HBM on an organic package is never feasible (bit 4)
    assert np.all(r["reason"][pk == "organic"] & 4)
    # UCIe-A needs an interposer or bridge: multi-chiplet organic+ucie-a has bit 2
    assert np.all(r["reason"][(pk == "organic") & (phy == "ucie-a") & (r["chiplets"] > 1)] & 2)
    # fewer stacks than chiplets: bit 32
    assert np.all((r["reason"][r["hbm_stacks"] < r["chiplets"]] & 32) == 32)
    assert np.array_equal(r["feasible"] == 1, r["reason"] == 0)
    assert r["feasible"].sum() > 0


def test_mesh_factors_by_hand():
    assert sweep.mesh_factors(1)[0] == np.inf
    # two chiplets, one link of unit bandwidth each way: each receives 1
    assert sweep.mesh_factors(2) == pytest.approx((1.0, 1.0))
    # 2x2 mesh = 4-ring: 12 flows, diagonal ones 2 hops: mean hops 16/12
    bw, hops = sweep.mesh_factors(4)
    assert hops == pytest.approx(16 / 12)


def test_pareto_front_by_hand():
    cost_ = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 1.0])
    thr = np.array([1.0, 5.0, 4.0, 3.0, 6.0, 0.5])
    feas = np.array([1, 1, 1, 1, 1, 1], bool)
    assert sorted(sweep.pareto_front(cost_, thr, feas).tolist()) == [0, 1, 4]
    feas[1] = False
    assert sorted(sweep.pareto_front(cost_, thr, feas).tolist()) == [0, 2, 3, 4]


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_local_and_dask_agree(tmp_path):
    s = spec()
    a = sweep.run_sweep(s, executor="local", out=tmp_path / "a.csv", plot=tmp_path / "a.png")
    b = sweep.run_sweep(s, executor="dask", workers=1, processes=False, out=tmp_path / "b.csv")
    assert a.n_configs == b.n_configs == s.size
    assert a.n_feasible == b.n_feasible
    ra = sorted(_read(tmp_path / "a.csv"), key=lambda r: int(r["config"]))
    rb = sorted(_read(tmp_path / "b.csv"), key=lambda r: int(r["config"]))
    assert ra == rb and len(ra) == s.size
    assert [int(r["config"]) for r in ra] == list(range(s.size))
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert a.front and all(r["feasible"] == 1 for r in a.front)
    costs = [r["cost_usd"] for r in a.front]
    thr = [r["throughput"] for r in a.front]
    assert costs == sorted(costs) and thr == sorted(thr)


def test_existing_scheduler_address(tmp_path):
    """--scheduler path: connect to a running scheduler instead of starting a cluster."""
    from dask.distributed import LocalCluster
    s = spec()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        r = sweep.run_sweep(s, executor="dask", scheduler=cluster.scheduler_address, keep=False)
    assert r.n_configs == s.size and r.workers == 1
    ref = sweep.run_sweep(s, executor="local", keep=False)
    assert r.n_feasible == ref.n_feasible


_leaf = st.one_of(st.integers(-5, 20), st.floats(allow_nan=True), st.text(max_size=6),
                  st.booleans(), st.sampled_from(["interposer", "ucie-a", "hbm3", 7, 5]))
_val = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=80, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(["name", "space", "fixed", "workload", "run",
                                                 "node_scaling", "chiplets", "node", "package",
                                                 "hbm_stacks", "phy", "hbm", "logic_area_mm2",
                                                 "kind", "m", "d_model", "chunk", "volume"]),
                                _val), max_size=3))
def test_fuzz_spec_loader(edits):
    """Random edits of a valid sweep spec: a SweepSpec or a ConfigError, nothing else."""
    import copy
    d = copy.deepcopy(SPEC)
    for key, value in edits:
        tables = [t for t in (d, d.get("space"), d.get("workload"), d.get("run"))
                  if isinstance(t, dict)]
        target = next((t for t in tables if key in t), None)
        if target is None:
            target = d["space"] if isinstance(d.get("space"), dict) else d
        target[key] = value
    try:
        s = sweep.spec_from_dict(d, TECH)
    except ConfigError as e:
        assert e.field
    else:
        assert s.size >= 1
