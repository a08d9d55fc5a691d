"""CLI: diestack system report / sweep exit codes, outputs, and no clobbering on failure."""

import json
import tomllib

import pytest

from diestack.flows.cli import main
from diestack.packaging.system import DEFAULT_PATH


@pytest.fixture
def build(tmp_path, monkeypatch):
    monkeypatch.setenv("DIESTACK_BUILD", str(tmp_path / "build"))
    return tmp_path / "build"


def _toml(d):
    """Minimal TOML writer for the nested tables/arrays used here."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in tables:
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
        else:
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def test_report_default_json(build, capsys):
    assert main(["system", "report", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    d = build / "system" / "default"
    for f in ("report.html", "metrics.json", "floorplan.png", "roofline.png", "thermal.png"):
        assert (d / f).stat().st_size > 500, f
    m = json.loads((d / "metrics.json").read_text())
    assert m["name"] == out["name"] == "default"
    assert m["memory"]["bandwidth_gbs"] == pytest.approx(4 * 819.2)
    assert m["compute"]["chiplets"] == 4
    assert m["placement"]["legal"] is True
    assert 45.0 < m["thermal"]["peak_c"] < 200.0
    assert m["cost"]["total_recurring_cost"] > 4 * 320      # at least the four HBM3 stacks


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["dies"][1].update(x=15.0), "dies[1].x"),
    (lambda d: d["interposer"].update(width_mm=100.0), "interposer.width_mm"),
    (lambda d: d["links"][0].update(phy="ucie-z"), "links[0].phy"),
    (lambda d: d["dies"][0].pop("y"), "dies[0].y"),
])
def test_report_bad_input_exit_2(build, tmp_path, capsys, mutate, field):
    with open(DEFAULT_PATH, "rb") as fh:
        d = tomllib.load(fh)
    mutate(d)
    f = tmp_path / "bad.toml"
    f.write_text(_toml(d))
    assert main(["system", "report", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"error: {field}:" in err, err
    assert "Traceback" not in err
    assert not (build / "system").exists()


def test_report_missing_and_garbage_files(build, tmp_path, capsys):
    assert main(["system", "report", str(tmp_path / "nope.toml")]) == 2
    assert "FILE" in capsys.readouterr().err
    g = tmp_path / "g.toml"
    g.write_text("this is [ not toml")
    assert main(["system", "report", str(g)]) == 2
    assert "bad TOML" in capsys.readouterr().err


def test_sweep_cli(build, tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "cli"\n[space]\nchiplets = [1, 2]\nnode = [7]\n'
                    'package = ["interposer"]\nhbm_stacks = [2]\nphy = ["ucie-a"]\n'
                    '[workload]\nkind = "gemm"\nm = 512\nn = 512\nk = 512\n')
    out = tmp_path / "r.csv"
    assert main(["system", "sweep", str(spec), "--executor", "local", "--out", str(out),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["configs"] == 2 and res["throughput_unit"] == "TOPS"
    assert out.read_text().count("\n") == 3
    assert (tmp_path / "r_pareto.png").exists()
    # bad inputs: exit 2, the earlier results untouched
    before = out.read_text()
    bad = tmp_path / "b.toml"
    bad.write_text(spec.read_text().replace('node = [7]', 'node = [4]'))
    assert main(["system", "sweep", str(bad), "--executor", "local", "--out", str(out)]) == 2
    assert "space.node[0]" in capsys.readouterr().err
    assert out.read_text() == before
    assert main(["system", "sweep", str(spec), "--out", str(tmp_path / "r.parquet")]) == 2
    assert main(["system", "sweep", str(spec), "--executor", "local", "--scheduler",
                 "tcp://127.0.0.1:1"]) == 2
    assert main(["system", "sweep", str(tmp_path / "none.toml")]) == 2


@pytest.mark.slow
def test_run_stage_section(tmp_path):
    from diestack.flows.run import RunContext
    from diestack.flows.system import _stage
    sec = _stage(RunContext(out=tmp_path))
    assert sec["passed"] is True
    assert sec["metrics"]["pngs"] == ["system/floorplan.png", "system/roofline.png",
                                      "system/thermal.png"]
    for p in sec["metrics"]["pngs"]:
        assert (tmp_path / p).stat().st_size > 500
    assert "Thermal check" in sec["markdown"]
