"""System/chiplet TOML loaders: every bad input is a ConfigError naming the field; fuzzing."""

import copy
import os
import random
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diestack.chiplets import builtin, chiplet_from_dict
from diestack.hdl.common.params import ConfigError
from diestack.packaging.system import DEFAULT_PATH, load_system, system_from_dict
from diestack.packaging.tech import load_tech

TECH = load_tech()
with open(DEFAULT_PATH, "rb") as fh:
    DEFAULT = tomllib.load(fh)

NPU = {
    "name": "big", "kind": "compute", "width_mm": 11.0, "height_mm": 12.0, "node": 7,
    "power_dynamic_w": 10.0, "power_static_w": 5.0,
    "compute": {"arrays": 4, "rows": 16, "cols": 16, "clock_ghz": 1.0, "sram_mib": 8,
                "mac_energy_pj": 0.2, "sram_energy_pj_per_bit": 0.1},
    "phys": [{"name": "hbm", "kind": "hbm", "edge": "W", "offset_mm": 3.0, "width_mm": 6.0},
             {"name": "d2d_n", "kind": "d2d", "type": "ucie-a", "edge": "N", "offset_mm": 4.5,
              "width_mm": 2.0},
             {"name": "d2d_e", "kind": "d2d", "type": "ucie-a", "edge": "E", "offset_mm": 5.0,
              "width_mm": 2.0},
             {"name": "d2d_s", "kind": "d2d", "type": "ucie-a", "edge": "S", "offset_mm": 4.5,
              "width_mm": 2.0}],
}


def sys_dict():
    return copy.deepcopy(DEFAULT)


def expect_field(d, field, match=None):
    with pytest.raises(ConfigError) as ei:
        system_from_dict(d, tech=TECH)
    assert ei.value.field == field, f"expected field {field!r}, got {ei.value}"
    if match:
        assert match in str(ei.value), str(ei.value)
    return ei.value


def test_default_loads():
    s = load_system(None)
    assert s.name == "default"
    assert len(s.compute_dies) == 4 and len(s.memory_dies) == 4
    assert [d.chiplet.kind for d in s.dies].count("io") == 1
    assert s.package == "interposer"
    # every NPU has one HBM3 stack of 1024 x 6.4 Gb/s / 8 = 819.2 GB/s (hbm.md §1.1)
    for d in s.compute_dies:
        assert s.hbm_bandwidth_gbs(d.name) == pytest.approx(1024 * 6.4 / 8)


def test_builtin_descriptors():
    npu = builtin("npu")
    assert npu.compute.macs_per_cycle == 128 * 16 * 16
    assert npu.compute.peak_ops == pytest.approx(2 * 128 * 256 * 1.5e9)
    assert builtin("hbm3").memory.bandwidth_gbs == pytest.approx(819.2)
    with pytest.raises(ConfigError) as ei:
        builtin("gpu")
    assert ei.value.field == "chiplet"
    # the compute die is `arrays` copies of the RTL NPU core (hdl/npu/config.py)
    rtl = npu.compute.rtl_config()
    assert (rtl.rows, rtl.cols) == (16, 16)
    assert npu.compute.arrays * rtl.macs == npu.compute.macs_per_cycle
    assert (rtl.sp_kib, rtl.acc_kib) == (256, 64)


# ---- every bad-input case names its field ---------------------------------------------------

def test_unknown_top_key():
    d = sys_dict()
    d["colour"] = "red"
    expect_field(d, "colour", "unknown key")


def test_unknown_die_key():
    d = sys_dict()
    d["dies"][2]["z"] = 1.0
    expect_field(d, "dies[2].z", "unknown key")


def test_missing_fields():
    d = sys_dict()
    del d["dies"][3]["x"]
    expect_field(d, "dies[3].x", "missing")
    d = sys_dict()
    del d["interposer"]
    expect_field(d, "interposer", "missing")
    d = sys_dict()
    del d["links"][1]["b"]
    expect_field(d, "links[1].b", "missing")


def test_negative_areas_and_coordinates():
    d = sys_dict()
    d["interposer"]["height_mm"] = -3.0
    expect_field(d, "interposer.height_mm")
    d = sys_dict()
    d["chiplets"] = {"big": dict(NPU, width_mm=-11.0)}
    expect_field(d, "chiplets.big.width_mm")
    d = sys_dict()
    d["dies"][0]["y"] = -1.0
    expect_field(d, "dies[0].y")


def test_overlapping_dies():
    d = sys_dict()
    d["dies"][1]["x"] = 15.0           # npu1 onto npu0
    e = expect_field(d, "dies[1].x", "overlaps")
    assert "npu0" in str(e) and "npu1" in str(e)


def test_die_off_interposer():
    d = sys_dict()
    d["dies"][5]["x"] = 36.0           # hbm1 past the east edge
    expect_field(d, "dies[5].x", "past the interposer width")


def test_interposer_over_limit():
    d = sys_dict()
    d["interposer"] = {"width_mm": 60.0, "height_mm": 50.0}   # 3000 mm^2 > 3.3 reticles
    e = expect_field(d, "interposer.width_mm", "limit")
    assert "3000" in str(e)
    d = sys_dict()
    d["package"] = "fanout-chip-first"                        # 1445 mm^2 > 1716? no: fits
    d["interposer"] = {"width_mm": 42.5, "height_mm": 42.0}   # 1785 > 1716
    # (and UCIe-A is not a fan-out PHY in the data, but the size is checked first)
    expect_field(d, "interposer.width_mm", "limit")


def test_unknown_node_and_phy():
    d = sys_dict()
    d["chiplets"] = {"big": dict(NPU, node=4)}
    d["dies"][0]["chiplet"] = "big"
    expect_field(d, "chiplets.big.node", "unknown process node 4")
    d = sys_dict()
    bad = copy.deepcopy(NPU)
    bad["phys"][1]["type"] = "ucie-z"
    d["chiplets"] = {"big": bad}
    expect_field(d, "chiplets.big.phys[1].type", "unknown PHY 'ucie-z'")
    d = sys_dict()
    d["links"][0]["phy"] = "warp-drive"
    expect_field(d, "links[0].phy", "unknown PHY")
    d = sys_dict()
    d["package"] = "wirebond"
    expect_field(d, "package")


def test_phy_not_allowed_on_package():
    d = sys_dict()
    d["package"] = "organic"          # UCIe-A needs an interposer or bridge (phys.toml)
    expect_field(d, "links[0].a", "cannot be used")


def test_bad_references():
    d = sys_dict()
    d["links"][0]["a"] = "npu9.d2d_e"
    expect_field(d, "links[0].a", "unknown die")
    d = sys_dict()
    d["links"][0]["a"] = "npu0.d2d_w"
    expect_field(d, "links[0].a", "has no PHY")
    d = sys_dict()
    d["links"][0]["a"] = "npu0.hbm"
    expect_field(d, "links[0].a", "not d2d")
    d = sys_dict()
    d["links"][1]["a"] = "npu0.d2d_e"  # already used by links[0]
    expect_field(d, "links[1].a", "already used")
    d = sys_dict()
    d["hbm"][0]["stack"] = "npu1"
    expect_field(d, "hbm[0].stack", "not a memory stack")
    d = sys_dict()
    d["dies"][0]["chiplet"] = "gpu"
    expect_field(d, "dies[0].chiplet", "unknown built-in chiplet")
    d = sys_dict()
    del d["hbm"][3]
    expect_field(d, "dies[7].name", "not attached")


def test_hbm_not_facing_its_phy():
    d = sys_dict()
    d["dies"][4]["rotation"] = 180     # hbm0's PHY now points west, away from npu0
    expect_field(d, "hbm[0].stack", "must face")
    d = sys_dict()
    d["dies"][4]["x"] = 0.0            # 1.75 mm gap: still within HBM_MAX_GAP_MM
    system_from_dict(d, tech=TECH)
    d["dies"][4]["y"] = 18.0           # slide it down: PHYs overlap 2.935 mm < 3 mm (half of 6)
    d["dies"][6]["y"] = 5.0            # keep hbm2 out of the way
    expect_field(d, "hbm[0].stack", "overlaps host PHY")


def test_link_beyond_reach():
    d = sys_dict()
    # move npu1/hbm1 and npu3/hbm3 east by 2 mm: npu0-npu1 becomes 3 mm > UCIe-A's 2 mm
    d["interposer"]["width_mm"] = 44.5
    for i in (1, 3, 5, 7):
        d["dies"][i]["x"] += 2.0
    e = expect_field(d, "links[0]", "reaches 2 mm")
    assert "3.00 mm" in str(e)


def test_chiplet_descriptor_errors():
    for mut, field in [
        (lambda c: c.update(kind="gpu"), "c.kind"),
        (lambda c: c.pop("compute"), "c.compute"),
        (lambda c: c["compute"].update(rows=0), "c.compute.rows"),
        (lambda c: c["phys"][0].update(edge="X"), "c.phys[0].edge"),
        (lambda c: c["phys"][1].update(offset_mm=10.0), "c.phys[1].width_mm"),
        (lambda c: c["phys"][2].pop("type"), "c.phys[2].type"),
        (lambda c: c["phys"][3].update(name="d2d_n"), "c.phys[3].name"),
        (lambda c: c.update(node="7nm"), "c.node"),
        (lambda c: c.update(power_static_w=-1), "c.power_static_w"),
    ]:
        c = copy.deepcopy(NPU)
        mut(c)
        with pytest.raises(ConfigError) as ei:
            chiplet_from_dict(c, "c", phy_types=set(TECH.phys), nodes=set(TECH.nodes))
        assert ei.value.field == field, str(ei.value)


def test_chiplet_file_reference(tmp_path):
    (tmp_path / "big.toml").write_text(
        'name = "big"\nkind = "compute"\nwidth_mm = 11.0\nheight_mm = 12.0\nnode = 5\n'
        'power_dynamic_w = 1.0\npower_static_w = 1.0\n'
        '[compute]\narrays = 1\nrows = 16\ncols = 16\nclock_ghz = 1.0\nsram_mib = 1\n'
        'mac_energy_pj = 0.1\nsram_energy_pj_per_bit = 0.1\n'
        '[[phys]]\nname = "hbm"\nkind = "hbm"\nedge = "W"\noffset_mm = 3.0\nwidth_mm = 6.0\n')
    d = sys_dict()
    d["chiplets"] = {"big": {"file": "big.toml"}}
    d["dies"][0]["chiplet"] = "big"
    # npu0 as 'big' has no d2d PHYs: the link referencing npu0.d2d_e names the field
    with pytest.raises(ConfigError) as ei:
        system_from_dict(d, base_dir=tmp_path, tech=TECH)
    assert ei.value.field == "links[0].a"
    d["chiplets"] = {"big": {"file": "missing.toml"}}
    with pytest.raises(ConfigError) as ei:
        system_from_dict(d, base_dir=tmp_path, tech=TECH)
    assert ei.value.field == "chiplets.big.file"


# ---- fuzzing -------------------------------------------------------------------------------

def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


_scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=12), st.booleans(),
                     st.sampled_from(["npu", "hbm3", "io", "npu0.d2d_e", "ucie-a", "interposer",
                                      "N", "E", "hbm", "compute", "memory", "npu0.hbm"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["set", "del", "add"]),
                              _values), min_size=1, max_size=4))
def test_fuzz_mutated_default(ops):
    """Random edits of the valid default: the loader returns a System or raises ConfigError."""
    d = sys_dict()
    d["chiplets"] = {"big": copy.deepcopy(NPU)}
    for pick, op, value in ops:
        paths = [p for p in _paths(d) if p]
        path = paths[pick % len(paths)]
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if op == "set":
            parent[key] = value
        elif op == "del":
            del parent[key]
        elif isinstance(parent, dict):
            parent[f"x{pick % 7}"] = value
        else:
            parent.append(value)
    try:
        system_from_dict(d, tech=TECH)
    except ConfigError as e:
        assert e.field and isinstance(e.field, str)


@settings(max_examples=100, deadline=None)
@given(d=st.dictionaries(st.sampled_from(["name", "package", "interposer", "dies", "links", "hbm",
                                          "chiplets", "description", "other"]), _values, max_size=8))
def test_fuzz_random_tables(d):
    try:
        system_from_dict(d, tech=TECH)
    except ConfigError as e:
        assert e.field


def test_fuzz_seeded_numeric_perturbations():
    """Random numeric jitter of every number in the default (seed printed, DIESTACK_SEED)."""
    seed = int(os.environ.get("DIESTACK_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    nums = [p for p in _paths(DEFAULT) if p and isinstance(_get(DEFAULT, p), (int, float))
            and not isinstance(_get(DEFAULT, p), bool)]
    for _ in range(200):
        d = sys_dict()
        for p in rng.sample(nums, 3):
            _set(d, p, rng.choice([-1, 0, 1e9, rng.uniform(-50, 80), rng.randint(-5, 400)]))
        try:
            system_from_dict(d, tech=TECH)
        except ConfigError as e:
            assert e.field, f"seed={seed}"


def _get(d, path):
    for k in path:
        d = d[k]
    return d


def _set(d, path, v):
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = v
