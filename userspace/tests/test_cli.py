"""Command line and main(): every failure is one line on stderr and exit status 1."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_dumpfilter

from dumpfilter import cli

CMD = [sys.executable, "-m", "dumpfilter.cli"]


def _one_error_line(r, needle: str = "") -> None:
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert r.returncode == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


@pytest.mark.parametrize("size", ["infK", "1e400M", "nanG", "-5M", "0"])
def test_sizes_that_are_no_byte_count_are_refused(size, tmp_path):
    r = run_dumpfilter(f"-L{size}", "-d", "31", tmp_path / "in", tmp_path / "out")
    _one_error_line(r, "size")


def test_an_empty_file_name_is_refused_before_anything_is_written(synth61, tmp_path):
    r = subprocess.run(
        [*CMD, "-d", "31", synth61.path, ""], capture_output=True, text=True, cwd=tmp_path
    )
    _one_error_line(r, "empty file name")
    _one_error_line(run_dumpfilter("--dry-run", ""), "empty file name")


def test_a_file_name_with_a_newline_gives_one_line(tmp_path):
    r = run_dumpfilter("--dry-run", tmp_path / "no\nsuch")
    _one_error_line(r, "no\\nsuch")


@pytest.mark.parametrize(
    "args, redirect",
    [
        (["-F", "-d", "31"], "stdout"),
        (["--dump-dmesg"], "stdout"),
        (["--dry-run", "--show-stats", "-d", "31"], "stdout"),
    ],
)
def test_a_closed_stdout_the_run_needs_is_one_error_line(synth61, args, redirect):
    # `>&-`: the child starts with fd 1 closed
    r = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", *CMD, *args, synth61.path],
        stderr=subprocess.PIPE,
        text=True,
    )
    _one_error_line(r, "standard output is closed")


def test_reassembly_from_a_closed_stdin_is_one_error_line(tmp_path):
    r = subprocess.run(
        ["sh", "-c", '"$@" <&-', "sh", *CMD, "-R", str(tmp_path / "out")],
        stderr=subprocess.PIPE,
        text=True,
    )
    _one_error_line(r, "stdin")
    assert not (tmp_path / "out").exists()


def test_a_closed_stdout_is_not_reused_for_the_dump(synth61, tmp_path):
    # -F with fd 1 closed must not write its stream into whatever file takes fd 1
    out = tmp_path / "dump"
    r = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", *CMD, "-c", "-d", "31", synth61.path, str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"KDUMP   "


def test_an_unexpected_exception_is_one_line_and_its_traceback_needs_debug(monkeypatch, capsys):
    def boom(opts):
        raise ValueError("unexpected\nvalue")

    monkeypatch.setattr(cli, "run", boom)
    assert cli.main(["--dry-run", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "dumpfilter: internal error: ValueError: unexpected\\nvalue\n"
    assert cli.main(["-D", "--dry-run", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("ValueError: unexpected\\nvalue\n")
