"""The foundation: simulator layer (cache, both simulators, failure detection), steps, synthesis, CLI."""

import json
import os
import random

import pytest

from diestack.flows.cli import main
from diestack.flows.step import Step
from diestack.hdl.common.params import ConfigError
from diestack.hdl.common.verilog import to_verilog
from diestack.sim import runner

from .mac_design import MAC, RAM

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))


@pytest.fixture(scope="module")
def mac_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("mac") / "mac_top.v"
    path.write_text(to_verilog(MAC(), "mac_top"))
    return path


@pytest.mark.parametrize("sim", runner.SIMULATORS)
def test_runner_builds_runs_and_caches(sim, mac_verilog, tmp_path):
    if sim not in runner.available():
        pytest.skip(f"{sim} is not installed")
    print(f"seed {SEED}")
    b1 = runner.build([mac_verilog], "mac_top", sim=sim)
    b2 = runner.build([mac_verilog], "mac_top", sim=sim)
    assert b2.cached and b2.build_dir == b1.build_dir
    res = runner.run(b1, "diestack.tests.tb_mac", extra_env={"MAC_SEED": SEED},
                     test_dir=tmp_path / "ok")
    assert res.ok, res.log_tail()
    bad = runner.run(b1, "diestack.tests.tb_mac", extra_env={"MAC_SEED": SEED, "MAC_BREAK": 1},
                     test_dir=tmp_path / "bad")
    assert not bad.ok and bad.failed == 1
    with pytest.raises(runner.SimulationFailed, match="1 of 1"):
        bad.check()


def test_runner_rejects_unknown_simulator():
    with pytest.raises(ConfigError, match="sim"):
        runner.resolve("modelsim")


def test_step_writes_log_replay_and_metrics(tmp_path):
    with Step("demo", "echo", root=tmp_path) as step:
        step.run(["sh", "-c", "echo hello"])
        step.metrics["answer"] = 42
    d = tmp_path / "demo" / "echo"
    assert "hello" in (d / "log.txt").read_text()
    assert "echo hello" in (d / "replay.sh").read_text()
    m = json.loads((d / "metrics.json").read_text())
    assert m["answer"] == 42 and m["status"] == "ok" and m["exetime_s"] >= 0


def test_synth_generic_and_ecp5(mac_verilog, tmp_path):
    from diestack.flows.synth import synthesize
    with Step("mac", "synth_generic", root=tmp_path) as s:
        g = synthesize(mac_verilog, "mac_top", "generic", s)
    assert g["ffs"] == 32                      # the 32-bit accumulator register
    assert g["transistors_est"] > g["transistors_logic"] > 1000
    with Step("mac", "synth_ecp5", root=tmp_path) as s:
        e = synthesize(mac_verilog, "mac_top", "ecp5", s)
    assert e["ffs"] == 32 and e["dsps"] == 1   # one 8x8 multiply fits one MULT18X18D
    assert e["fmax_mhz"] > 50
    assert (tmp_path / "mac" / "synth_ecp5" / "replay.sh").read_text().count("yowasp") == 2


def test_synth_ecp5_map_only(mac_verilog, tmp_path):
    from diestack.flows.synth import synthesize
    with Step("mac", "synth_ecp5_map", root=tmp_path) as s:
        e = synthesize(mac_verilog, "mac_top", "ecp5", s, place=False)
    assert e["ffs"] == 32 and e["dsps"] == 1 and e["lut4"] > 0 and e["placed"] is False
    assert "fmax_mhz" not in e and "luts" not in e
    assert "nextpnr" not in (tmp_path / "mac" / "synth_ecp5_map" / "replay.sh").read_text()


def test_synth_generic_keeps_memories(tmp_path):
    from diestack.flows.synth import SRAM_TRANSISTORS_PER_BIT, synthesize
    src = tmp_path / "ram_top.v"
    src.write_text(to_verilog(RAM(), "ram_top"))
    with Step("ram", "synth_generic", root=tmp_path) as s:
        g = synthesize(src, "ram_top", "generic", s)
    assert g["memory_bits"] == 256 * 16
    assert g["ffs"] < 64                       # not 4096 flip-flops: the RAM stayed a $mem cell
    assert g["transistors_est"] >= SRAM_TRANSISTORS_PER_BIT * 256 * 16


def test_cli_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    assert main(["run", "--only", "no-such-stage"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_pyproject_ships_every_package_and_data_file():
    """A regular (non-editable) install ships only the packages pyproject lists: every folder
    with an __init__.py, and every data file, must be covered."""
    import fnmatch
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    st = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, data = set(st["packages"]), st["package-data"]
    missing, unshipped = [], []
    for name, folder in st["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder)
            pkg = ".".join((name,) + rel.parts)
            if "__pycache__" not in rel.parts and pkg not in listed:
                missing.append(pkg)
        for f in (root / folder).rglob("*"):
            if f.suffix not in (".toml", ".json", ".csv") or "__pycache__" in f.parts:
                continue
            owner = f.parent
            while not (owner / "__init__.py").exists():
                owner = owner.parent
            pkg = ".".join((name,) + owner.relative_to(root / folder).parts)
            rel = f.relative_to(owner).as_posix()
            if not any(fnmatch.fnmatch(rel, pat) for pat in data.get(pkg, []) + data.get("*", [])):
                unshipped.append(f.relative_to(root).as_posix())
    assert not missing, f"pyproject [tool.setuptools] packages lacks {missing}"
    assert not unshipped, f"pyproject package-data does not ship {unshipped}"
