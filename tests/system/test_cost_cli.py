"""`diestack system cost` and `diestack bench cost`: JSON contract, table, bad input -> exit 2."""

import json

import pytest

from diestack.flows.cli import main


def run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as e:          # argparse errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cost_json_golden(capsys):
    rc, out, err = run(capsys, "system", "cost", "--node", "5", "--logic-area", "800",
                       "--chiplets", "4", "--package", "organic", "--json")
    assert rc == 0, err
    d = json.loads(out)
    for k in ("die_yield", "dies_per_wafer", "kgd_cost_per_die", "package_cost",
              "total_recurring_cost", "breakdown"):
        assert k in d
    assert set(d["breakdown"]) == {"raw_chips", "defect_chips", "raw_package", "defect_package",
                                   "wasted_kgd"}
    assert d["die_yield"] == pytest.approx(0.7873, rel=1e-3)          # system.md golden
    assert d["kgd_cost_per_die"] == pytest.approx(86.50, rel=1e-3)
    assert d["total_recurring_cost"] == pytest.approx(401.42, rel=1e-3)
    assert sum(d["breakdown"].values()) == pytest.approx(d["total_recurring_cost"], rel=1e-12)
    assert d["package_cost"] == pytest.approx(d["breakdown"]["raw_package"] + d["breakdown"]["defect_package"]
                                              + d["breakdown"]["wasted_kgd"], rel=1e-12)
    assert d["nre"]["per_unit"] > 0 and d["total_cost_per_unit"] > d["total_recurring_cost"]


def test_cost_table(capsys):
    rc, out, err = run(capsys, "system", "cost", "--node", "7nm", "--logic-area", "100",
                       "--chiplets", "1", "--package", "organic")
    assert rc == 0, err
    assert "0.9143" in out and "571.71" in out and "$17.88" in out and "$20.59" in out


@pytest.mark.parametrize("pkg", ["fanout-chip-first", "fanout-chip-last", "interposer", "bridge", "hybrid-3d"])
def test_cost_packages(capsys, pkg):
    rc, out, err = run(capsys, "system", "cost", "--node", "7", "--logic-area", "600", "--chiplets", "3",
                       "--package", pkg, "--alpha", "2", "--volume", "1e5", "--family-volume", "1e6",
                       "--d2d-overhead", "0.05", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["inputs"]["alpha"] == 2 and d["inputs"]["package"] == pkg
    assert d["die_area_mm2"] == pytest.approx(200 * 1.05)


@pytest.mark.parametrize("argv,option", [
    (["--node", "4"], "--node"),
    (["--node", "seven"], "--node"),
    (["--logic-area", "-5"], "--logic-area"),
    (["--logic-area", "abc"], "--logic-area"),
    (["--chiplets", "0"], "--chiplets"),
    (["--package", "ceramic"], "--package"),
    (["--alpha", "0"], "--alpha"),
    (["--d2d-overhead", "-1"], "--d2d-overhead"),
    (["--volume", "0.5"], "--volume"),
    (["--volume", "10", "--family-volume", "5"], "--family-volume"),
    (["--logic-area", "60000", "--chiplets", "100", "--package", "interposer"], "--logic-area"),
])
def test_cost_bad_input_exit_2(capsys, argv, option):
    base = {"--node": "5", "--logic-area": "800", "--chiplets": "4", "--package": "organic"}
    args = ["system", "cost"]
    for k, v in base.items():
        if k not in argv:
            args += [k, v]
    rc, out, err = run(capsys, *args, *argv)
    assert rc == 2
    assert option in err, err
    assert "Traceback" not in err
    assert out == ""


def test_over_limit_is_reported(capsys):
    rc, out, err = run(capsys, "system", "cost", "--node", "5", "--logic-area", "3000", "--chiplets", "4",
                       "--package", "interposer", "--json")
    assert rc == 0
    assert json.loads(out)["over_limit"] is True
    assert "exceeds its limit" in err


def test_bench_cost(capsys, tmp_path):
    out_json = tmp_path / "b.json"
    rc, out, err = run(capsys, "bench", "cost", "--n", "20000", "--repeat", "1", "--out", str(out_json))
    assert rc == 0, err
    d = json.loads(out_json.read_text())
    print(f"bench cost: {d['configs_per_s']:,.0f} configurations/s ({d['evaluation']})")
    assert d["configs_per_s"] >= 10_000
    assert d["includes_perf"], "packaging.perf is in the repo: the bench must time it too"
    assert "configurations/s" in out
