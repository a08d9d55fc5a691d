"""The --command-log CSV: round trip, clean errors, and replay through the device model."""

import pytest

from diestack.hdl.common.params import ConfigError
from diestack.hdl.hbm.timing import resolve
from diestack.sim.hbm.cmdlog import CSV_HEADER, read_command_log, replay, write_command_log

LOG = [
    (0, 0, 0, 0, 1, 2, "ACT", 9, None),
    (0, 0, 1, 0, 1, 2, "ACT", 9, None),            # other pseudo-channel: independent device
    (14, 0, 0, 0, 1, 2, "RD", 9, 4),
    (14, 0, 1, 0, 1, 2, "WR", 9, 4),
    (48, 0, 0, None, None, None, "PREA", None, None),
    (62, 0, 0, None, None, None, "REFab", None, None),
]


def test_roundtrip_and_replay(tmp_path):
    p = tmp_path / "log.csv"
    write_command_log(p, LOG)
    assert p.read_text().splitlines()[0] == ",".join(CSV_HEADER)
    assert read_command_log(p) == LOG
    devs = replay(read_command_log(p), resolve("hbm2"))
    assert sorted(devs) == [(0, 0), (0, 1)]
    assert sum(d.violation_total for d in devs.values()) == 0


def test_replay_finds_a_violation(tmp_path):
    bad = list(LOG)
    bad[2] = (13, 0, 0, 0, 1, 2, "RD", 9, 4)        # tRCD_RD is 14
    devs = replay(bad, resolve("hbm2"))
    assert dict(devs[(0, 0)].violation_counts) == {"tRCD_RD": 1}
    assert devs[(0, 1)].violation_total == 0


@pytest.mark.parametrize("text,field,what", [
    ("cycle,channel\n", "log.csv:1", "header"),
    (",".join(CSV_HEADER) + "\n0,0,0,0,0,0,NOP,,\n", "log.csv:2", "command 'NOP'"),
    (",".join(CSV_HEADER) + "\n0,0,0,0,0,0,ACT,,\n", "log.csv:2", "row is empty"),
    (",".join(CSV_HEADER) + "\nx,0,0,0,0,0,ACT,1,\n", "log.csv:2", "cycle 'x'"),
    (",".join(CSV_HEADER) + "\n0,0,0,0,0,0,ACT,1\n", "log.csv:2", "9 fields"),
    (",".join(CSV_HEADER) + "\n\u00b2,0,0,0,0,0,ACT,1,\n", "log.csv:2", "cycle '\u00b2'"),
    (",".join(CSV_HEADER) + "\n9,0,0,0,0,0,ACT,1,\n9,0,1,0,0,0,ACT,1,\n4,0,0,0,0,1,ACT,1,\n",
     "log.csv:4", "earlier than"),
    (",".join(CSV_HEADER) + "\n0,0,0,0,0,\x000,ACT,1,\n", "log.csv:2", "bank '\\x000'"),
])
def test_bad_logs_name_line_and_field(tmp_path, text, field, what):
    p = tmp_path / "log.csv"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_command_log(p)
    assert info.value.field == field and what in str(info.value)


def test_missing_log(tmp_path):
    with pytest.raises(ConfigError) as info:
        read_command_log(tmp_path / "none.csv")
    assert info.value.field == "command_log"


def test_binary_log(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(ConfigError) as info:
        read_command_log(p)
    assert info.value.field == "command_log" and "not a text CSV" in str(info.value)
