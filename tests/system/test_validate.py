"""`packaging.validate` / `diestack system validate`: model vs published real-system figures."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from diestack.flows.cli import main
from diestack.hdl.common.params import ConfigError
from diestack.packaging.tech import DATA_DIR, load_tech
from diestack.packaging.validate import load_systems, summary, validate

ROWS = validate()
BY = {(r.system, r.metric): r for r in ROWS}


def test_all_five_systems_present():
    names = {r.system for r in ROWS}
    assert names == {"NVIDIA H100 SXM5", "NVIDIA H200 SXM", "NVIDIA B200", "AMD MI300X", "Apple M1 Ultra"}


def test_memory_bandwidth_from_stacks():
    # independent arithmetic: stacks x 1024 b x pin rate / 8 (hbm.md §1.1; system.md §4 pin rates)
    expect = {"NVIDIA H100 SXM5": 5 * 1024 * 5.2 / 8, "NVIDIA H200 SXM": 6 * 1024 * 6.25 / 8,
              "NVIDIA B200": 8 * 1024 * 7.8 / 8, "AMD MI300X": 8 * 1024 * 5.2 / 8,
              "Apple M1 Ultra": 1024 * 6.4 / 8}
    for s, v in expect.items():
        assert BY[(s, "memory_bw")].model == pytest.approx(v)


@pytest.mark.parametrize("system", ["NVIDIA H100 SXM5", "NVIDIA H200 SXM", "NVIDIA B200", "AMD MI300X"])
def test_memory_bw_within_2pct(system):
    r = BY[(system, "memory_bw")]
    assert abs(r.error_pct) <= 2.0, f"{system}: {r.model} vs {r.published} ({r.error_pct:+.2f}%)"


@pytest.mark.parametrize("system", ["NVIDIA H100 SXM5", "NVIDIA H200 SXM", "NVIDIA B200", "AMD MI300X",
                                    "Apple M1 Ultra"])
def test_dense_throughput_within_2pct(system):
    r = BY[(system, "dense_throughput")]
    assert abs(r.error_pct) <= 2.0, f"{system}: {r.model} vs {r.published} ({r.error_pct:+.2f}%)"


def test_m1_ultra_memory_is_an_honest_known_miss():
    r = BY[("Apple M1 Ultra", "memory_bw")]
    assert r.error_pct == pytest.approx((819.2 / 800 - 1) * 100)
    assert r.status == "MISS*" and "rounded" in r.note


def test_recall_flags_follow_reference():
    # system.md §4 marks these [recall]
    assert BY[("NVIDIA B200", "dense_throughput")].tag == "recall"
    assert BY[("AMD MI300X", "dense_throughput")].tag == "recall"
    assert BY[("Apple M1 Ultra", "dense_throughput")].tag == "recall"
    assert BY[("NVIDIA H100 SXM5", "memory_bw")].tag == "page"
    for r in ROWS:
        if r.tag == "recall":
            assert not r.gated and r.status in ("recall", "ok", "over")


def test_area_rows():
    ret = load_tech().reticle_mm2
    assert BY[("NVIDIA H100 SXM5", "die_area:GH100")].model == pytest.approx(814 / ret)
    ip = BY[("AMD MI300X", "interposer_area")]
    assert ip.model == pytest.approx(1.1 * (4 * 370 + 8 * 121))     # XCDs are stacked on IODs
    assert abs(ip.error_pct) < 5 and ip.status == "ok"
    assert BY[("NVIDIA B200", "interposer_area")].model / ret == pytest.approx(3.3, abs=0.05)
    assert BY[("NVIDIA B200", "d2d_bw")].status == "ok"


def test_summary_passes_and_gating():
    s = summary(ROWS)
    assert s["passed"] and not s["misses"]
    assert len(s["known_deviations"]) == 1


def test_gated_miss_fails(tmp_path):
    text = (DATA_DIR / "validation.toml").read_text().replace("published_gbyte_s = 3350.0", "published_gbyte_s = 3000.0")
    p = tmp_path / "v.toml"
    p.write_text(text)
    s = summary(validate(systems=load_systems(p)))
    assert not s["passed"] and any("H100" in m for m in s["misses"])


@pytest.mark.parametrize("old,new,field", [
    ("channels = 5 ", "channels = 0 ", "systems.h100.memory.channels"),
    ('kind = "hbm3"\nchannels = 5', 'kind = "hbm9"\nchannels = 5', "systems.h100.memory.kind"),
    ('published_tag = "recall"', 'published_tag = "rumour"', "systems.b200.compute.published_tag"),
    ('name = "AMD MI300X"', 'name = "AMD MI300X"\ncolour = "red"', "systems.mi300x.colour"),
    ('[["GH100", 814.0, 1, "page"]]', '[["GH100", -814.0, 1, "page"]]', "systems.h100.dies[0].area_mm2"),
    ('package = "interposer"\ndies = [["GH100"', 'package = ["interposer"]\ndies = [["GH100"',
     "systems.h100.package"),
])
def test_bad_config_names_field(tmp_path, old, new, field):
    text = (DATA_DIR / "validation.toml").read_text()
    assert old in text
    p = tmp_path / "v.toml"
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        validate(systems=load_systems(p))
    assert e.value.field == field


def test_cli_validate(capsys):
    rc = main(["system", "validate", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["summary"]["passed"] and len(d["rows"]) == len(ROWS)
    rc = main(["system", "validate"])
    out, _ = capsys.readouterr()
    assert rc == 0 and "[recall]" in out and "MISS*" in out and "H100" in out


def test_run_stage(tmp_path):
    from diestack.flows.run import RunContext
    from diestack.flows.system_cost import stage_validate
    sec = stage_validate(RunContext(out=tmp_path))
    assert sec["passed"] and "MI300X" in sec["markdown"]
    assert (tmp_path / "system_validate.json").exists()


@settings(max_examples=30, deadline=None)
@given(section=st.sampled_from(["memory", "compute"]),
       key=st.sampled_from(["channels", "pin_gbps", "units", "clock_ghz", "published_gbyte_s",
                            "published_tflops", "flop_per_clk_per_unit"]),
       value=st.one_of(st.integers(-5, 5), st.floats(-1e3, 1e3), st.text(alphabet="ab1", max_size=2),
                       st.booleans()))
def test_fuzz_config_values(section, key, value):
    """A replaced config value either validates or raises ConfigError naming a field of h100."""
    systems = load_systems()
    sysd = {k: dict(v) for k, v in systems.items()}
    sub = dict(sysd["h100"][section])
    if key not in sub:
        return
    sub[key] = value
    sysd["h100"] = {**sysd["h100"], section: sub}
    try:
        rows = validate(systems=sysd)
    except ConfigError as e:
        assert e.field.startswith(f"systems.h100.{section}."), e.field
        return
    assert all(r.model == r.model for r in rows)
