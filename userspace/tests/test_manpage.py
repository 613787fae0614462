"""dumpfilter.8 and the README's option table say what the parser does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from dumpfilter import cli, manpage

USERSPACE = Path(__file__).resolve().parent.parent
README = USERSPACE.parent / "README.md"


def _option_strings() -> list[str]:
    return [s for a in cli.build_parser()._actions for s in a.option_strings]


def test_committed_man_page_is_the_one_the_parser_generates():
    committed = (USERSPACE / "man" / "dumpfilter.8").read_text()
    assert committed == manpage.render(), (
        "man/dumpfilter.8 is out of date: python -m dumpfilter.manpage > man/dumpfilter.8"
    )


def test_man_page_names_every_option_with_its_help():
    page = manpage.render()
    for action in cli.build_parser()._actions:
        for s in action.option_strings:
            assert f"\\fB{s.replace('-', chr(92) + '-')}\\fR" in page, s
        if action.help:
            first = action.help.split()[0].replace("-", "\\-")
            assert first in page


def test_readme_option_table_lists_every_option():
    text = README.read_text()
    table = text[text.index("| Option | Meaning |") :]
    table = table[: table.index("\n\n")]
    firsts = " ".join(row.split("|")[1] for row in table.splitlines()[2:])
    named = set(re.findall(r"(?<![\w-])(-{1,2}[A-Za-z][-\w]*)", firsts))
    missing = [s for s in _option_strings() if s not in named and s not in ("-h", "--help")]
    assert missing == [], f"README's option table lacks {missing}"


def test_man_page_renders_without_warnings(tmp_path):
    page = tmp_path / "dumpfilter.8"
    page.write_text(manpage.render())
    p = subprocess.run(
        ["man", "--warnings", "-l", "-E", "UTF-8", str(page)],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    assert "--mem-usage" in p.stdout.replace("\u2010", "-")


def test_manpage_module_prints_the_page():
    p = subprocess.run(
        [sys.executable, "-m", "dumpfilter.manpage"], capture_output=True, text=True, check=True
    )
    assert p.stdout == manpage.render()
