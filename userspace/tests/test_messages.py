"""makedumpfile's message levels: progress lines, the closing lines, where each goes, -h."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys

import pytest
from conftest import run_dumpfilter

from dumpfilter.cli import build_parser
from dumpfilter.messages import COMPLETED, ML_COMMON, ML_ERROR, ML_REPORT, Messages
from dumpfilter.output import LOG_INTERVAL, Progress, eta_text

# ------------------------------------------------------------------------ progress lines


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_eta_is_written_as_makedumpfile_writes_it():
    assert [eta_text(s) for s in (0, 99, 100, 5999, 6000, 48 * 3600 - 1)] == [
        "eta: 0s",
        "eta: 99s",
        "eta: 1m40s",
        "eta: 99m59s",
        "eta: 1h40m",
        "eta: 47h59m",
    ]
    assert eta_text(48 * 3600) == "eta: 2d0h"
    assert eta_text(100 * 86400) == "eta: >100day"


def test_progress_line_is_makedumpfiles_layout_with_the_time_left():
    clock = Clock()
    p = Progress(True, "Copying data", 1000, stream=Stream(True), clock=clock)
    clock.t += 10.0  # a quarter done in 10 s: 30 s left
    line = p.line(250, clock())
    assert line == f"{'Copying data':<50}: [ 25.0 %] /  {'eta: 30s':>16}"
    assert p.line(0, clock()).endswith("[  0.0 %] /" + " " * 18)  # no estimate at 0


def test_on_a_terminal_one_line_is_rewritten_at_most_once_a_second():
    clock, out = Clock(), Stream(True)
    p = Progress(True, "Copying data", 100, stream=out, clock=clock)
    for done in range(0, 100, 10):  # 10 updates, 0.25 s apart
        p.update(done)
        clock.t += 0.25
    p.finish()
    text = out.getvalue()
    assert text.count("\r") == 4  # 0, 1 s, 2 s and the 100 % line
    assert "\n" not in text[:-1] and text.endswith("[100.0 %] -" + " " * 11 + "eta: 0s\n")


def test_in_a_log_whole_lines_come_every_interval_then_the_100_percent_line():
    clock, out = Clock(), Stream(False)
    p = Progress(True, "Copying data", 100, stream=out, clock=clock)
    for done in range(100):  # 100 updates, 0.25 s apart: 25 s
        p.update(done)
        clock.t += 0.25
    p.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == int((25 - 0.25) // LOG_INTERVAL) + 1  # the last update is at 24.75 s
    pcts = [float(re.search(r"\[ *([0-9.]+) %\]", ln).group(1)) for ln in lines]
    assert pcts == sorted(pcts) and pcts[-1] == 100.0 and pcts[0] > 0
    assert all(ln.startswith(f"{'Copying data':<50}: [") and "eta: " in ln for ln in lines)


def test_in_a_log_a_short_step_prints_nothing():
    clock, out = Clock(), Stream(False)
    p = Progress(True, "Copying data", 100, stream=out, clock=clock)
    for done in range(100):
        p.update(done)
        clock.t += 0.01
    p.finish()
    assert out.getvalue() == ""


def test_progress_off_or_on_a_closed_stderr_prints_nothing_and_never_fails():
    out = Stream(True)
    p = Progress(False, "Copying data", 10, stream=out)
    p.update(5)
    p.finish()
    assert out.getvalue() == ""
    closed = Stream(True)
    closed.close()
    p = Progress(True, "Copying data", 10, stream=closed)
    p.update(5)
    p.finish()


# ------------------------------------------------------------------- levels and streams


@pytest.mark.parametrize("level", range(32))
def test_each_message_level_bit_lets_through_its_own_kind_only(level, capsys):
    m = Messages(level)
    m.common("common")
    m.write(ML_ERROR, "error\n")
    m.step("Copying data", 1.5)
    m.write(ML_REPORT, "report\n")
    m.completed()
    out, err = capsys.readouterr()
    assert ("dumpfilter: common" in out) == bool(level & ML_COMMON)
    assert (COMPLETED in out) == bool(level & ML_COMMON)
    assert ("error" in err) == bool(level & ML_ERROR)
    assert ("STEP [Copying data               ] : 1.500000 seconds" in out) == bool(
        level & ML_REPORT
    )
    assert ("report" in out) == bool(level & ML_REPORT)


def test_with_stdout_busy_common_and_report_messages_go_to_stderr(capsys):
    m = Messages(31, stdout_busy=True)
    m.saved(["STDOUT"])
    m.write(ML_REPORT, "report\n")
    m.completed()
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "\nThe dumpfile is saved to STDOUT.\nreport\n\nmakedumpfile Completed.\n"


def test_split_files_are_listed_as_makedumpfile_lists_them(capsys):
    Messages(7).saved(["a", "b", "c"])
    Messages(7).saved(["a", "b"])
    assert capsys.readouterr().out == (
        "\nThe dumpfiles are saved to a, b, and c.\n\nThe dumpfiles are saved to a, and b.\n"
    )


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def small(synth_factory):
    return synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])


def test_a_run_ends_with_makedumpfiles_closing_lines_on_stdout(small, tmp_path):
    out = tmp_path / "dump"
    r = run_dumpfilter("-l", "-d", "31", small.path, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"\nThe dumpfile is saved to {out}.\n\nmakedumpfile Completed.\n"
    assert r.stderr == ""  # a short run logs no progress


def test_message_level_0_is_silent_and_4_prints_only_the_error(small, tmp_path):
    out = tmp_path / "dump"
    r = run_dumpfilter("--message-level", "0", "-d", "31", small.path, out)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run_dumpfilter("--message-level", "0", "-d", "31", small.path, out)  # exists
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")
    r = run_dumpfilter("--message-level", "4", "-d", "31", small.path, out)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1


def test_a_failure_at_the_default_level_is_one_line_on_stderr_and_no_closing_line(small, tmp_path):
    out = tmp_path / "dump"
    out.write_bytes(b"x")
    r = run_dumpfilter("-d", "31", small.path, out)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1


def test_report_level_alone_prints_step_times_and_the_report_but_no_closing_lines(small, tmp_path):
    r = run_dumpfilter("--message-level", "16", "-d", "31", small.path, tmp_path / "d")
    assert r.returncode == 0 and r.stderr == ""
    steps = re.findall(r"^STEP \[(.{27})\] : \d+\.\d{6} seconds$", r.stdout, re.M)
    assert [s.strip() for s in steps] == [
        "Checking for memory holes",
        "Excluding unnecessary pages",
        "Copying data",
    ]
    assert "\nOriginal pages  : 0x" in r.stdout and COMPLETED not in r.stdout


def test_flattened_output_keeps_stdout_for_the_dump_and_messages_on_stderr(small, tmp_path):
    with open(tmp_path / "flat", "wb") as f:
        r = subprocess.run(
            [sys.executable, "-m", "dumpfilter.cli", "-F", "-d", "31", "--show-stats",
             small.path],
            stdout=f, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "flat").read_bytes()[:12] == b"makedumpfile"
    assert "Original pages  : " in r.stderr
    assert r.stderr.endswith("\nThe dumpfile is saved to STDOUT.\n\nmakedumpfile Completed.\n")


def test_a_json_report_on_stdout_keeps_stdout_to_itself(small):
    r = run_dumpfilter("--dry-run", "--show-stats", "-d", "31", "--stats-json", "-", small.path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dump_level"] == 31
    assert "Original pages  : " in r.stderr and r.stderr.endswith(f"\n{COMPLETED}\n")


def test_split_and_dry_run_closing_lines(small, tmp_path):
    parts = [str(tmp_path / n) for n in ("a", "b", "c")]
    r = run_dumpfilter("--split", "-d", "31", small.path, *parts)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"\nThe dumpfiles are saved to {parts[0]}, {parts[1]}, and {parts[2]}.\n"
        "\nmakedumpfile Completed.\n"
    )
    r = run_dumpfilter("--dry-run", "-d", "31", small.path)
    assert r.returncode == 0 and r.stdout == "\nmakedumpfile Completed.\n"  # nothing saved


def test_on_a_terminal_each_step_shows_its_progress_line(small, tmp_path):
    """stderr on a pseudo-terminal: the scan and the copy each end on a 100 % line."""
    main, sub = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "dumpfilter.cli", "-d", "31", small.path, tmp_path / "d"],
        stdout=subprocess.DEVNULL, stderr=sub,
    )  # fmt: skip
    os.close(sub)
    err = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        err += chunk
    os.close(main)
    assert p.wait(timeout=60) == 0
    text = err.decode()
    for step in ("Excluding unnecessary pages", "Copying data"):
        assert re.search(rf"\r{step} +: \[100\.0 %\] [-/|\\]  +eta: 0s", text), text


# ---------------------------------------------------------------------------------- help


def test_help_describes_every_option():
    r = run_dumpfilter("-h")
    assert r.returncode == 0
    for action in build_parser()._actions:
        assert action.help, action.option_strings
        for opt in action.option_strings:
            assert re.search(rf"(^|[ ,]){re.escape(opt)}\b", r.stdout), opt
    for bits in (r"1\s+zero pages", r"16\s+free pages", r"\n  1\s+progress", r"16\s+report"):
        assert re.search(bits, r.stdout), bits
