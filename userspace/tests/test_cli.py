"""Command line and main(): every failure is one line on stderr and exit status 1."""

from __future__ import annotations

import os
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


@pytest.mark.parametrize("columns", ["60", "0", "junk"])
def test_help_wraps_by_argparse_rule_for_the_width(columns):
    """``-h`` wraps as argparse would by itself: to COLUMNS less 2, or 80 less 2 when
    COLUMNS is unusable and stdout is no terminal."""
    env = {**os.environ, "COLUMNS": columns}
    r = subprocess.run([*CMD, "-h"], capture_output=True, text=True, env=env, check=True)
    width = int(columns) - 2 if columns.isdigit() and int(columns) > 0 else 78
    # the options argparse wraps; usage, description and epilog are laid out by hand
    help_lines = r.stdout.split("\noptions:\n")[1].split("\n\n")[0].splitlines()
    assert max(map(len, help_lines)) <= width
    assert max(map(len, help_lines)) > width - 10  # filled up to it, not wrapped narrower


def test_a_dump_run_leaves_out_modules_only_help_and_reports_need(synth61, tmp_path):
    """A run that writes a dump imports neither json (only --stats-json needs it), shutil
    (argparse's own width rule: bz2 and lzma come with it) nor pathlib: fewer files to open
    and libraries to map at every start, which a capture kernel pays most for."""
    code = (
        "import sys\n"
        "from dumpfilter import cli\n"
        f"rc = cli.main(['-d', '31', '-l', {str(synth61.path)!r}, {str(tmp_path / 'out')!r}])\n"
        "print(rc, sorted({'json', 'shutil', 'bz2', 'lzma', 'pathlib'} & set(sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines()[-1] == "0 []", r.stdout + r.stderr


def test_the_command_exits_with_mains_status_and_every_message_printed(synth61, tmp_path):
    """The command skips the interpreter's teardown (``cli.console``): what main printed
    must still reach both streams, and its status be the process's."""
    ok = subprocess.run([*CMD, "--dry-run", "-d", "31", str(synth61.path)], capture_output=True,
                        text=True)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("makedumpfile Completed."), ok
    bad = subprocess.run([*CMD, "-d", "31", str(tmp_path / "none"), str(tmp_path / "out")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "none" in bad.stderr, bad


def test_messages_into_a_closed_pipe_are_dropped_and_the_run_still_succeeds(synth61):
    """As makedumpfile's: a message stream that went away loses the messages, not the dump.
    The command's own exit (``cli.console``) flushes the streams once more and must not
    fail there either."""
    p = subprocess.Popen([*CMD, "--dry-run", "-d", "31", str(synth61.path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    p.stdout.close()  # before the command prints its first line
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == "", err
