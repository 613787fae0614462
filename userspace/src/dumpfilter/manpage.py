"""dumpfilter.8, generated from the command's own argparse parser.

The options, their arguments and their help texts are the parser's, so the manual page says
what ``dumpfilter --help`` says; tests/test_manpage.py fails when the committed page is
older than the parser.  Regenerate with ``python -m dumpfilter.manpage > man/dumpfilter.8``.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, cli

DATE = "2026-12-07"  # the page's date: changed by hand when the text is

DESCRIPTION = """\
dumpfilter shrinks Linux kernel crash dumps. In the capture kernel that kdump boots after a
panic, the dead kernel's memory is /proc/vmcore. dumpfilter decides for every page frame
whether it helps debugging (kernel data, slab, page tables) or not (free pages, page cache,
user data, zero pages) and writes a dump that crash, drgn and libkdumpfile open. The page
classes come from the dump's own VMCOREINFO: no vmlinux or debug information is needed.

The command line is makedumpfile's for the invocations distributions use, so dumpfilter can
take makedumpfile's place in a kdump service (see KDUMP-TOOLS below)."""

SECTIONS = [
    (
        "INPUT",
        """\
VMCOREINFO comes from the input: an ELF vmcore (/proc/vmcore or a saved copy), a
kdump-compressed dump (filtered again), or with --mem-usage /proc/kcore of the running
system. A flattened stream must be rebuilt with -R first.""",
    ),
    (
        "OUTPUT",
        """\
A new DUMPFILE is written as an unnamed file that takes its name only when complete, so a
failed or killed run never leaves a file that looks whole; a full disk or -L leaves the dump
marked incomplete in its header. An existing DUMPFILE is refused without -f; character
devices, FIFOs and - (stdout) are written in place.""",
    ),
    (
        "KDUMP-TOOLS",
        """\
Debian's kdump-config runs /usr/bin/makedumpfile. To make it run dumpfilter, divert
makedumpfile and link dumpfilter in its place:
.PP
.nf
dpkg-divert --local --rename --divert /usr/bin/makedumpfile.distrib --add /usr/bin/makedumpfile
ln -s /opt/dumpfilter/bin/dumpfilter /usr/bin/makedumpfile
.fi
.PP
To switch back:
.PP
.nf
rm /usr/bin/makedumpfile
dpkg-divert --local --rename --remove /usr/bin/makedumpfile
.fi""",
    ),
    (
        "EXIT STATUS",
        """\
0 on success, 1 on any failure (one line on standard error), as makedumpfile.""",
    ),
    ("SEE ALSO", "makedumpfile(8), kdump-config(8), crash(8), drgn(1), kexec(8)"),
]


def _escape(text: str) -> str:
    """Text for a troff line: backslashes and hyphens literal, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln if ln.startswith((".", "'")) else ln) for ln in text.split("\n"))


def _prose(text: str) -> str:
    """A section's text: request lines (.PP, .nf, .fi) kept, the others escaped."""
    out = []
    for ln in text.split("\n"):
        out.append(ln if ln in (".PP", ".nf", ".fi") else _escape(ln))
    return "\n".join(out)


def _metavar(metavar: str | tuple[str, ...]) -> str:
    """argparse allows a tuple of names (one per argument); the page shows them in a row."""
    return metavar if isinstance(metavar, str) else " ".join(metavar)


def _option(action: argparse.Action) -> str:
    flags = []
    for s in action.option_strings:
        flag = f"\\fB{_escape(s)}\\fR"
        if action.nargs == 0:
            flags.append(flag)
        elif action.nargs == "?":
            choices = "|".join(action.choices or ())
            flags.append(f"{flag}[=\\fI{_escape(choices)}\\fR]")
        else:
            flags.append(
                f"{flag} \\fI{_escape(_metavar(action.metavar or action.dest.upper()))}\\fR"
            )
    return f".TP\n{', '.join(flags)}\n{_escape(action.help or '')}"


def render(parser: argparse.ArgumentParser | None = None) -> str:
    p = parser or cli.build_parser()
    usage = [ln.strip() for ln in (p.usage or "").strip().splitlines() if ln.strip()]
    lines = [
        f'.TH DUMPFILTER 8 "{DATE}" "dumpfilter {__version__}" "System Administration"',
        ".SH NAME",
        "dumpfilter \\- filter and compress Linux kernel crash dumps (makedumpfile-compatible)",
        ".SH SYNOPSIS",
        ".nf",
        *(_escape(u) for u in usage),
        ".fi",
        ".SH DESCRIPTION",
        _escape(DESCRIPTION),
        ".SH OPTIONS",
    ]
    for action in p._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            lines.append(_option(action))
    files = next(a for a in p._actions if not a.option_strings)
    lines += [
        ".TP",
        f"\\fI{_escape(_metavar(files.metavar or files.dest))}\\fR",
        _escape(files.help or ""),
    ]
    lines += [".SH MESSAGES", ".nf", _escape(p.epilog or ""), ".fi"]
    for title, text in SECTIONS:
        lines += [f".SH {title}", _prose(text)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
