"""The --show-stats report and the closing lines against makedumpfile 1.7.9's, run side by side
on the same synthetic vmcore (with the kernel-text PT_LOAD that repeats RAM, as kexec_file_load
makes it, and without the kernel-image trap page that makedumpfile would exclude)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def vmcore(synth_factory):
    return synth_factory(kernel="6.1", image_trap=False, seed=3, ram=[(1, 0x9F), (0x100, 0x6000)])


def _block(text: str) -> list[str]:
    """The report from "Original pages" to "Write bytes"."""
    lines = text.replace("\r", "\n").splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith("Original pages")))
    end = lines.index(next(ln for ln in lines if ln.startswith("Write bytes")))
    return lines[start : end + 1]


def _run(cmd: list, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def _both(mdf: str, args: list[str], vmcore: str, tmp_path, out: list[str]):
    (tmp_path / "m").mkdir()
    (tmp_path / "d").mkdir()
    m = _run([mdf, *args, vmcore, *out], tmp_path / "m")
    d = _run([sys.executable, "-m", "dumpfilter.cli", *args, vmcore, *out], tmp_path / "d")
    assert m.returncode == 0, m.stdout + m.stderr
    assert d.returncode == 0, d.stderr
    return m, d


@pytest.mark.parametrize(
    "args",
    [
        ["-d", "31"],
        ["-d", "31", "-l"],
        ["-d", "1", "-c"],
        ["-d", "0", "-z"],
        ["-d", "16"],
        ["--dry-run", "-d", "31", "-l"],
    ],
    ids=" ".join,
)
def test_kdump_report_is_makedumpfiles_line_for_line(makedumpfile_179, vmcore, tmp_path, args):
    m, d = _both(makedumpfile_179, [*args, "--show-stats"], vmcore.path, tmp_path, ["out"])
    assert _block(d.stdout) == _block(m.stdout)


def test_elf_report_is_makedumpfiles_but_for_the_kernel_text_it_writes_twice(
    makedumpfile_179, vmcore, tmp_path
):
    """makedumpfile's -E file repeats the kernel-text PT_LOAD's data; ours holds it once, so
    the files (and "Write bytes") differ by that segment: 24 MiB and its program header."""
    args = ["-E", "-d", "31", "--show-stats"]
    m, d = _both(makedumpfile_179, args, vmcore.path, tmp_path, ["out"])
    ours, theirs = _block(d.stdout), _block(m.stdout)
    assert ours[:-1] == theirs[:-1]
    assert sum("in ELF format" in ln for ln in ours) == 2
    text_segment = 24 << 20
    write = [int(b[-1].split(":")[1]) for b in (ours, theirs)]
    assert write[1] - write[0] == text_segment + 2 * 56


def test_report_of_a_kdump_input_is_makedumpfiles(makedumpfile_179, vmcore, tmp_path):
    first = tmp_path / "first.kdump"
    r = _run([makedumpfile_179, "-d", "1", "-l", vmcore.path, str(first)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    m, d = _both(makedumpfile_179, ["-d", "31", "--show-stats"], str(first), tmp_path, ["o"])
    assert _block(d.stdout) == _block(m.stdout)


def test_closing_lines_are_makedumpfiles(makedumpfile_179, vmcore, tmp_path):
    m, d = _both(makedumpfile_179, ["-d", "31", "-l"], vmcore.path, tmp_path, ["out"])
    assert d.stdout == m.stdout == "\nThe dumpfile is saved to out.\n\nmakedumpfile Completed.\n"
    (tmp_path / "stats").mkdir()
    args = ["-d", "31", "-l", "--show-stats"]
    m, d = _both(makedumpfile_179, args, vmcore.path, tmp_path / "stats", ["out"])
    assert d.stdout.splitlines()[-5:] == m.stdout.splitlines()[-5:]  # blank lines included
    (tmp_path / "split").mkdir()
    args = ["--split", "-d", "31"]
    m, d = _both(makedumpfile_179, args, vmcore.path, tmp_path / "split", ["a", "b", "c"])
    listed = "\nThe dumpfiles are saved to a, b, and c.\n\nmakedumpfile Completed.\n"
    assert d.stdout == m.stdout == listed


@pytest.mark.parametrize("level", [0, 1, 2, 4, 6, 16, 18, 23])
def test_message_levels_print_the_kinds_makedumpfile_prints(
    makedumpfile_179, vmcore, tmp_path, level
):
    """Per kind of message, ours and makedumpfile's are both there or both not: on success
    (closing lines, STEP times, the report) and on failure (an existing DUMPFILE)."""
    args = ["--message-level", str(level), "-d", "31"]
    m, d = _both(makedumpfile_179, args, vmcore.path, tmp_path, ["out"])

    def kinds(p: subprocess.CompletedProcess) -> dict[str, bool]:
        return {
            "completed": "makedumpfile Completed." in p.stdout,
            "saved": "The dumpfile is saved to out." in p.stdout,
            "steps": "STEP [Copying data" in p.stdout,
            "report": "Original pages  : " in p.stdout,
        }

    assert kinds(d) == kinds(m)
    m = _run([makedumpfile_179, *args, vmcore.path, "out"], tmp_path / "m")
    d = _run([sys.executable, "-m", "dumpfilter.cli", *args, vmcore.path, "out"], tmp_path / "d")
    assert m.returncode == d.returncode == 1
    assert bool(d.stderr) == bool(m.stderr)  # the error line, at bit 4
    assert len(d.stderr.splitlines()) == (1 if level & 4 else 0)
