"""Technology data loader: embedded data valid, bad files raise ConfigError naming the field."""

import shutil

import pytest
from hypothesis import given, settings, strategies as st

from diestack.hdl.common.params import ConfigError
from diestack.packaging.tech import DATA_DIR, load_tech

TECH = load_tech()


def test_embedded_data():
    assert TECH.node(7).wafer_cost_usd == 9346.0                 # system.md §1.3
    assert TECH.node("5nm").d0_per_cm2 == 0.11
    assert TECH.node("N3").nm == 3
    assert TECH.reticle_mm2 == 858.0                              # system.md §3
    assert set(TECH.packages) >= {"organic", "fanout-chip-first", "fanout-chip-last",
                                  "interposer", "bridge", "hybrid-3d"}
    assert set(TECH.phys) >= {"ucie-s", "ucie-a", "ucie-3d", "bow-laminate", "aib-gen1"}
    assert TECH.hbm("hbm3").gbyte_s_per_stack == pytest.approx(819.2)   # hbm.md §1.1
    assert TECH.hbm("hbm4").gbyte_s_per_stack == pytest.approx(2048.0)
    assert TECH.package("interposer").max_area_mm2 == pytest.approx(3.3 * 858, rel=1e-3)
    assert TECH.phy("ucie-a").shoreline_gbyte_s_per_mm == pytest.approx(1317 / 2, rel=1e-3)


@pytest.mark.parametrize("what,name,field", [
    ("node", "4nm", "node"), ("node", 6, "node"), ("package", "ceramic", "package"),
    ("phy", "serdes", "phy"), ("hbm", "hbm5", "hbm"),
    ("package", ["interposer"], "package"), ("phy", {"a": 1}, "phy"), ("hbm", 3, "hbm")])
def test_unknown_names(what, name, field):
    with pytest.raises(ConfigError) as e:
        getattr(TECH, what)(name)
    assert e.value.field == field
    assert "known:" in str(e.value)


def test_unknown_node_message():
    with pytest.raises(ConfigError) as e:
        TECH.node("3.5nm")
    assert str(e.value).startswith("node: unknown node '3.5nm'; known: 3nm, 5nm")


def _copy(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(DATA_DIR, d)
    return d


@pytest.mark.parametrize("fname,old,new,field", [
    ("packages.toml", "bond_yield = 0.95", "bond_yield = 1.2", "packages.interposer.bond_yield"),
    ("packages.toml", "bond_yield = 0.95", "bond_yield = 0.95\ncolour = 1", "packages.interposer.colour"),
    ("packages.toml", 'assembly = "chip-first"', 'assembly = "sideways"', "packages.fanout-chip-first.assembly"),
    ("packages.toml", "interposer_area_scale = 1.1 ", "interposer_area_scale = 0.5 ", "packages.interposer.interposer_area_scale"),
    ("nodes.toml", "wafer_cost_usd = 9346.0", "wafer_cost_usd = -1.0", "nodes.7.wafer_cost_usd"),
    ("nodes.toml", "d0_per_cm2 = 0.09\n", "", "nodes.7.d0_per_cm2"),
    ("nodes.toml", "[nodes.7]", "[nodes.seven]", "nodes.seven"),
    ("nodes.toml", "alpha = 10.0\n", 'alpha = "ten"\n', "nodes.3.alpha"),
    ("phys.toml", "reach_mm = 2.0", "reach_mm = -2.0", "phys.ucie-a.reach_mm"),
    ("phys.toml", 'packages = ["stack"]', 'packages = ["moon"]', "phys.ucie-3d.packages[0]"),
    ("hbm.toml", "bus_bits = 2048", "bus_bits = 2048.5", "hbm.hbm4.bus_bits"),
    ("hbm.toml", "[hbm.hbm2]", "[hbm.hbm0]\nfoo = 1\n[hbm.hbm2]", "hbm.hbm0.foo"),
    ("nodes.toml", "[wafer]", "[wafer\n", "nodes.toml"),
])
def test_bad_files_name_field(tmp_path, fname, old, new, field):
    d = _copy(tmp_path)
    text = (d / fname).read_text()
    assert old in text, old
    (d / fname).write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_tech(d)
    assert e.value.field == field, str(e.value)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["d0_per_cm2", "wafer_cost_usd", "nre_usd", "alpha"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                       st.text(alphabet="ab1.-e ", max_size=3), st.booleans()))
def test_fuzz_node_values(tmp_path_factory, key, value):
    """Any replacement of a node value either loads with a valid value or names the field."""
    import tomllib
    d = _copy(tmp_path_factory.mktemp("fz"))
    doc = tomllib.loads((d / "nodes.toml").read_text())
    lines = []
    for nm, row in doc["nodes"].items():
        lines.append(f"[nodes.{nm}]")
        for k, v in row.items():
            lines.append(f"{k} = {_toml(value) if (nm == '5' and k == key) else _toml(v)}")
    w = doc["wafer"]
    text = "[wafer]\n" + "\n".join(f"{k} = {v}" for k, v in w.items()) + "\n" + "\n".join(lines) + "\n"
    (d / "nodes.toml").write_text(text)
    try:
        t = load_tech(d)
    except ConfigError as e:
        assert e.field == f"nodes.5.{key}", str(e)
        return
    v = getattr(t.node(5), key)
    assert v == v and v >= 0 and v != float("inf")


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)
