"""The NPU commands of the CLI: exit codes, clear messages for bad input, gen output files."""

import json
import os
import random

import numpy as np
import pytest

from diestack.flows.cli import main
from diestack.flows.npu import scalesim_cycles
from diestack.sim import runner
from diestack.sim.npu import golden

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(2**31)))


def _files(tmp_path, a_shape=(5, 7), b_shape=(7, 6), a_dtype=np.int8, b_dtype=np.int8,
           d=None):
    rng = np.random.default_rng(SEED)
    a = rng.integers(-128, 128, a_shape).astype(a_dtype)
    b = rng.integers(-128, 128, b_shape).astype(b_dtype)
    np.save(tmp_path / "A.npy", a)
    np.save(tmp_path / "B.npy", b)
    args = ["npu", "gemm", "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "B.npy"),
            "--out", str(tmp_path / "C.npy"), "--rows", "4", "--cols", "4", "--dataflow", "ws"]
    if d is not None:
        np.save(tmp_path / "D.npy", d)
        args += ["--d", str(tmp_path / "D.npy")]
    return a, b, args


@pytest.mark.parametrize("change, needle", [
    ({"a_shape": (5, 8)}, "--b"),                       # K mismatch
    ({"a_dtype": np.int16}, "--a: dtype"),
    ({"b_dtype": np.float32}, "--b: dtype"),
    ({"d": np.zeros((5, 5), np.int32)}, "--d: shape"),
    ({"d": np.zeros((5, 6), np.int64)}, "--d: dtype"),
])
def test_gemm_bad_inputs_exit_2(tmp_path, capsys, change, needle):
    *_, args = _files(tmp_path, **change)
    (tmp_path / "C.npy").write_bytes(b"keep")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert (tmp_path / "C.npy").read_bytes() == b"keep"     # never destroyed on failure


@pytest.mark.parametrize("extra, needle", [
    (["--dataflow", "is"], "--dataflow"),
    (["--requant", "3"], "--requant"),
    (["--requant", "3,99"], "SHIFT"),
    (["--relu"], "--relu"),
])
def test_gemm_bad_options_exit_2(tmp_path, capsys, extra, needle):
    *_, args = _files(tmp_path)
    assert main(args + extra) == 2
    assert needle in capsys.readouterr().err


def test_gemm_rows_zero_and_missing_file(tmp_path, capsys):
    *_, args = _files(tmp_path)
    bad = list(args)
    bad[bad.index("--rows") + 1] = "0"
    assert main(bad) == 2
    assert "rows" in capsys.readouterr().err
    bad = list(args)
    bad[bad.index("--a") + 1] = str(tmp_path / "nope.npy")
    assert main(bad) == 2
    assert "--a: no such file" in capsys.readouterr().err


def test_gen_bad_dataflow_and_rows(tmp_path, capsys):
    assert main(["gen", "npu", "--rows", "4", "--cols", "4", "--dataflow", "xs", "-o",
                 str(tmp_path)]) == 2
    assert "dataflow" in capsys.readouterr().err
    assert main(["gen", "npu", "--rows", "0", "--cols", "4", "-o", str(tmp_path)]) == 2
    assert "rows" in capsys.readouterr().err


def test_gen_writes_verilog_and_interface(tmp_path):
    assert main(["gen", "npu", "--rows", "2", "--cols", "3", "--dataflow", "ws", "-o",
                 str(tmp_path)]) == 0
    v = (tmp_path / "npu_top.v").read_text()
    assert "module npu_top" in v
    iface = json.loads((tmp_path / "npu_top.json").read_text())
    names = json.dumps(iface)
    for port in ("s_axil", "m_axi", "irq"):
        assert port in names


def test_scalesim_model_matches_reference_example():
    # reference/npu.md: 128x256x512 on 16x16 -> WS 89,087, OS 69,375 cycles (SCALE-Sim 3.0.0)
    assert scalesim_cycles(128, 256, 512, 16, 16, "ws") == 89087
    assert scalesim_cycles(128, 256, 512, 16, 16, "os") == 69375


def test_gemm_runs_and_matches(tmp_path, capfd):
    if "verilator" not in runner.available():
        pytest.skip("verilator is not installed")
    print(f"seed {SEED}")
    a, b, args = _files(tmp_path, d=np.arange(30, dtype=np.int32).reshape(5, 6))
    assert main(args + ["--requant", "5,6", "--relu", "--json", "--seed", str(SEED)]) == 0
    text = capfd.readouterr().out
    out = json.loads(text[text.index("{"):])
    for key in ("cycles", "compute_cycles", "macs", "utilization", "counters"):
        assert key in out
    c = np.load(tmp_path / "C.npy")
    exp = golden.requant(golden.gemm(a, b, np.arange(30, dtype=np.int32).reshape(5, 6)), 5, 6,
                         relu=True)
    assert c.dtype == np.int8 and np.array_equal(c, exp), f"seed {SEED}"
