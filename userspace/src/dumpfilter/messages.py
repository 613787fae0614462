"""makedumpfile's message levels: which messages ``--message-level`` lets through, and where.

The level is a bit mask (makedumpfile(8)), 7 by default:

====  ==========  ===========================================================================
bit   messages    where
====  ==========  ===========================================================================
1     progress    stderr: "Copying data : [ 42.0 %] ... eta: 3s" (output.Progress)
2     common      stdout: "The dumpfile is saved to X.", "makedumpfile Completed.", a retry
4     error       stderr: the one line a failure prints
8     debug       stderr: what the scan found out about the dump (``-D``)
16    report      stdout: the STEP times and the page report (``--show-stats``)
====  ==========  ===========================================================================

As makedumpfile's, common and report messages go to stderr instead when stdout carries the
dump (``-F``).  Debug lines stay on stderr, where ``-D`` always wrote them.  A closed or broken
stdout loses the messages but never fails the run: the dump is what matters.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

ML_PROGRESS = 1
ML_COMMON = 2
ML_ERROR = 4
ML_DEBUG = 8
ML_REPORT = 16
DEFAULT_LEVEL = ML_PROGRESS | ML_COMMON | ML_ERROR
MAX_LEVEL = 31

# makedumpfile's last line; service logs and scripts look for it, so it is printed verbatim.
COMPLETED = "makedumpfile Completed."
STDOUT_NAME = "STDOUT"  # what makedumpfile calls the output of -F


class Messages:
    """Prints what ``level`` lets through.  ``stdout_busy``: stdout carries the dump (``-F``)."""

    def __init__(self, level: int, *, stdout_busy: bool = False):
        self.level = level
        self.stdout_busy = stdout_busy

    def says(self, bit: int) -> bool:
        return bool(self.level & bit)

    @property
    def out(self):
        """The stream of common and report messages (``None`` when it is closed)."""
        return sys.stderr if self.stdout_busy else sys.stdout

    def write(self, bit: int, text: str) -> None:
        """*text* as is (line ends included) on the stream of *bit*, if the level says it."""
        if not self.says(bit):
            return
        stream = sys.stderr if bit in (ML_PROGRESS, ML_ERROR, ML_DEBUG) else self.out
        if stream is None:
            return
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass

    def common(self, text: str) -> None:
        """A common message of ours, one line, named as ours."""
        self.write(ML_COMMON, f"dumpfilter: {text}\n")

    def step(self, name: str, seconds: float) -> None:
        """makedumpfile's ``STEP [name] : s.us seconds`` line (report level)."""
        self.write(ML_REPORT, f"STEP [{name:<27}] : {seconds:.6f} seconds\n")

    def saved(self, paths: Sequence[str], what: str = "dumpfile") -> None:
        """ "The dumpfile is saved to X." (``what``: "dumpfile", "dmesg log"); several files
        are listed as makedumpfile lists ``--split`` parts: "A, B, and C."."""
        if len(paths) > 1:
            names = ", ".join(paths[:-1]) + f", and {paths[-1]}"
            self.write(ML_COMMON, f"\nThe {what}s are saved to {names}.\n")
        else:
            self.write(ML_COMMON, f"\nThe {what} is saved to {paths[0]}.\n")

    def completed(self) -> None:
        self.write(ML_COMMON, f"\n{COMPLETED}\n")
