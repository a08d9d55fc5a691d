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


# ---- fuzz: every bad input of `npu gemm` exits 2, names the option, touches no output --------

from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

_WRONG_DTYPES = [np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64,
                 np.bool_, np.complex64]


def _valid_requant(text):
    """The documented rule of --requant (SCALE,SHIFT: two integers, int32 and 0..63)."""
    try:
        scale, shift = (int(x, 0) for x in text.split(","))
    except ValueError:
        return False
    return -(1 << 31) <= scale < (1 << 31) and 0 <= shift <= 63


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)


@st.composite
def _bad_gemm_input(draw):
    """One defect per example on top of an otherwise valid `npu gemm` call: (kind, option the
    message must name, files {name: ndarray | bytes}, argument overrides, extra arguments)."""
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    files = {"A": np.zeros((m, k), np.int8), "B": np.zeros((k, n), np.int8)}
    over, extra = {}, []
    kind = draw(st.sampled_from([
        "dtype", "ndim", "empty", "k_mismatch", "d_shape", "garbage", "npz", "missing",
        "dataflow", "requant", "relu", "array", "backpressure", "out_folder", "out_parent",
        "sim", "seed"]))
    which = draw(st.sampled_from(["A", "B", "D"]))
    if which == "D" and kind in ("dtype", "ndim", "empty", "garbage", "npz", "missing"):
        files["D"] = np.zeros((m, n), np.int32)
    option = f"--{which.lower()}"
    if kind == "dtype":
        good = np.int32 if which == "D" else np.int8
        dt = draw(st.sampled_from([d for d in _WRONG_DTYPES if d is not good]))
        files[which] = files[which].astype(dt)
    elif kind == "ndim":
        shape = draw(st.sampled_from([(3,), (2, 2, 2), ()]))
        files[which] = np.zeros(shape, files[which].dtype)
    elif kind == "empty":
        files[which] = np.zeros((0, 3) if draw(st.booleans()) else (3, 0), files[which].dtype)
    elif kind == "k_mismatch":
        option = "--b"
        files["B"] = np.zeros((k + draw(st.sampled_from([-1, 1, 2])) or k + 3, n), np.int8)
        if files["B"].shape[0] == 0:
            files["B"] = np.zeros((k + 1, n), np.int8)
    elif kind == "d_shape":
        option = "--d"
        shape = draw(st.sampled_from([(m + 1, n), (m, n + 1), (n + 1, m + 2), (1, m * n + 1)]))
        files["D"] = np.zeros(shape, np.int32)
    elif kind == "garbage":
        raw = draw(st.binary(max_size=64))
        if raw.startswith((b"\x93NUMPY", b"PK")):
            raw = b"x" + raw
        files[which] = raw
    elif kind == "npz":
        files[which] = "npz"
    elif kind == "missing":
        files[which] = None
    elif kind == "dataflow":
        option = "--dataflow"
        over["--dataflow"] = draw(_text.filter(lambda t: t not in ("ws", "os")))
    elif kind == "requant":
        option = "--requant"
        text = draw(st.one_of(
            _text, st.builds("{},{}".format, st.integers(), st.integers()),
            st.builds("{},{},{}".format, st.integers(-5, 5), st.integers(0, 9),
                      st.integers(0, 9))))
        if _valid_requant(text):          # "" included: it used to be taken as no --requant
            text = "1,64"
        extra += ["--requant", text]
    elif kind == "relu":
        option = "--relu"
        extra += ["--relu"]
    elif kind == "array":
        option = draw(st.sampled_from(["--rows", "--cols"]))
        over[option] = draw(st.one_of(st.sampled_from(["0", "1", "65", "-4", "256", "2.5"]),
                                      _text.filter(lambda t: not t.strip().lstrip("+-").isdigit())))
        option = option[2:]          # NPUConfig errors name the field ("rows"), argparse "--rows"
    elif kind == "backpressure":
        option = "--backpressure"
        extra += ["--backpressure", draw(st.sampled_from(["-0.1", "0.95", "1", "nan", "x"]))]
    elif kind == "out_folder":
        option = "--out"
        over["--out"] = "FOLDER"
    elif kind == "out_parent":
        option = "--out"
        over["--out"] = "missing/dir/C.npy"
    elif kind == "sim":
        option = "--sim"
        extra += ["--sim", draw(_text.filter(lambda t: t not in ("verilator", "icarus")))]
    elif kind == "seed":
        option = "--seed"
        extra += ["--seed", draw(st.sampled_from(["-1", str(2**32), "abc"]))]
    return kind, option, files, over, extra


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_bad_gemm_input())
def test_gemm_bad_input_fuzz(tmp_path_factory, capsys, monkeypatch, case):
    """Hypothesis: each bad input exits 2 before any simulation, with exactly one error line
    that names the option, no traceback, the
    existing output untouched and no stray files."""
    import diestack.sim.npu.harness as harness

    def no_sim(*a, **kw):
        raise AssertionError("a bad input reached the simulator")
    monkeypatch.setattr(harness, "run_gemms", no_sim)
    kind, option, files, over, extra = case
    work = tmp_path_factory.mktemp("fuzz")
    paths = {}
    for name, content in files.items():
        p = work / f"{name}.npy"
        if content is None:
            pass                                    # missing file
        elif isinstance(content, str):              # an .npz archive under a .npy name
            with open(p, "wb") as f:
                np.savez(f, x=np.zeros((2, 2), np.int8))
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            np.save(p, content)
        paths[name] = p
    (work / "FOLDER").mkdir()
    out = work / "C.npy"
    out.write_bytes(b"keep")
    args = {"--a": str(paths["A"]), "--b": str(paths["B"]), "--out": str(out), "--rows": "4",
            "--cols": "4", "--dataflow": "ws"}
    if "D" in paths:
        args["--d"] = str(paths["D"])
    for key, value in over.items():
        args[key] = str(work / value) if key == "--out" else value
    argv = ["npu", "gemm"] + [x for kv in args.items() for x in kv] + extra
    before = sorted(p.name for p in work.iterdir())
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    what = f"{kind}: {argv[2:]!r}\n{err}"
    assert rc == 2, what
    assert "Traceback" not in err, what
    lines = err.strip().splitlines()                # argparse's errors too (flows/cli.py)
    assert len(lines) == 1 and "error" in lines[0] and option in lines[0], what
    assert out.read_bytes() == b"keep", what
    assert sorted(p.name for p in work.iterdir()) == before, what
