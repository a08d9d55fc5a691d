"""``diestack d2d transfer`` / ``gen d2d`` / ``bench d2d`` / ``synth d2d``: exit codes and bad input."""

import json
import os
import random

import pytest

from diestack.flows.cli import main
from diestack.sim.runner import available


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


@pytest.mark.parametrize("argv,needle", [
    (["d2d", "transfer", "--in", "MISSING", "--out", "o.bin"], "--in"),
    (["d2d", "transfer", "--in", "IN", "--out", "o.bin", "--burst-every", "100"], "burst"),
    (["d2d", "transfer", "--in", "IN", "--out", "o.bin", "--stuck-lane", "99"], "stuck_lane"),
    (["d2d", "transfer", "--in", "IN", "--out", "nofolder/o.bin"], "--out"),
])
def test_transfer_bad_input_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "IN").write_bytes(b"abc")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "o.bin").exists()


@pytest.mark.parametrize("argv", [
    ["d2d", "transfer", "--in", "x", "--out", "y", "--ber", "2"],
    ["d2d", "transfer", "--in", "x", "--out", "y", "--flit", "128"],
    ["d2d", "transfer", "--in", "x", "--out", "y", "--lanes", "8"],
    ["gen", "d2d", "--lanes", "12", "-o", "x"],
])
def test_argparse_rejects(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_transfer_json_and_atomic_output(tmp_path, capsys):
    if "verilator" not in available():
        pytest.skip("verilator not installed")
    seed = _seed(21)
    data = random.Random(seed).randbytes(3000)
    src = tmp_path / "in.bin"
    dst = tmp_path / "out.bin"
    src.write_bytes(data)
    capsys.readouterr()
    rc = main(["d2d", "transfer", "--in", str(src), "--out", str(dst), "--ber", "1e-5",
               "--seed", str(seed), "--json", "--sim", "verilator"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    m = json.loads(cap.out)
    for k in ("bytes_in", "bytes_out", "flits", "cycles", "goodput", "crc_errors", "replays",
              "retrains", "latency_min", "latency_avg", "latency_max"):
        assert k in m, k
    assert m["bytes_in"] == m["bytes_out"] == len(data)
    assert dst.read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_raw_mode_with_errors_exits_1_and_keeps_old_output(tmp_path, capsys):
    """Raw flits have no CRC or retry: bit errors reach die B, the check fails (exit 1)."""
    if "verilator" not in available():
        pytest.skip("verilator not installed")
    seed = _seed(22)
    src = tmp_path / "in.bin"
    dst = tmp_path / "out.bin"
    src.write_bytes(random.Random(seed).randbytes(4000))
    dst.write_bytes(b"previous")
    rc = main(["d2d", "transfer", "--in", str(src), "--out", str(dst), "--flit", "raw",
               "--ber", "1e-3", "--seed", str(seed), "--sim", "verilator"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "differ" in err
    assert dst.read_bytes() == b"previous"
    assert (tmp_path / "out.bin.received").exists()


def test_run_stage_d2d(tmp_path, capsys):
    if "verilator" not in available():
        pytest.skip("verilator not installed")
    rc = main(["run", "--only", "d2d", "-o", str(tmp_path), "--seed", "3", "--sim", "verilator"])
    err = capsys.readouterr().err
    assert rc == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["d2d"]["passed"] and metrics["d2d"]["byte_exact"], metrics["d2d"]
    assert "D2D link" in (tmp_path / "report.md").read_text()
