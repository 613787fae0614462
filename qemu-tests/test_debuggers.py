"""crash and drgn answer the same on the ``-d 31`` dump as on the raw vmcore of the same crash.

The suite's cycles (conftest.py) leave both files; the debug info is the ``vmlinux`` of
Debian's ``linux-image-<release>-dbg`` for the booted stock kernel (debkernels.py fetches it
once into the cache, from bookworm for 6.1 and 6.12 and from sid for 7.2).  A dump that opens
but lacks a page a debugger reads shows up here as a ``page excluded`` error (crash) or a
FaultError (drgn), or as a different answer.

crash: Debian bookworm's crash 8.0.2 reads 6.1 but not 6.12 (it stops at
``invalid structure member offset: module_core_size``), so 6.12 and 7.2 are read by crash 9
built from Debian's current source package (crashbuild.py).  crash 9.0.2 reads 7.2 only with
its module support off and cannot list 7.2's slab caches (CRASH_LIMITS); drgn reads both.
"""

from __future__ import annotations

import re
import subprocess

import pytest

import crashbuild
import debkernels
from conftest import main_cycle
from kdumpvm import CycleResult

CRASH_COMMANDS = (
    "sys",
    "bt -a",
    "ps",
    "log",
    "kmem -i",
    "mod",
    "dev",
    "irq",
    "files",
    "vm",
    "kmem -s",
)
MARK = "==dumpfilter-command=="
# Lines allowed to differ between the raw vmcore and the filtered dump, and why:
#   DUMPFILE: names the file read, and crash flags a filtered dump "[PARTIAL DUMP]";
#   error trace: crash prints its own code addresses (randomised per run) after a command
#     it cannot run, which must then fail the same way on both files.
# No line differs because of an excluded page: the commands read kernel data only, and user
# pages, free pages, zero pages and the page cache are what -d 31 leaves out.
VOLATILE = re.compile(r"^\s*DUMPFILE: |^\[\S*crash\] error trace: ")


# The stock kernels whose -dbg package Debian offers: bookworm's 6.1 and 6.12, sid's 7.2.
# Reading 6.12 and 7.2 with crash needs crash 9 built from source (about an hour once, cold),
# so those cases are in the full tier.
DEBUG_KERNELS = ("6.1", "6.12", "7.2")
CRASH_KERNELS = (
    "6.1",
    pytest.param("6.12", marks=pytest.mark.full),
    pytest.param("7.2", marks=pytest.mark.full),
)
# What crash 9.0.2 cannot read of a series, and so is left out of its sessions there: the
# options it needs and the commands it cannot run.  7.x's struct module has no gpl_syms or
# num_gpl_syms (GPL-only exports became a flag of the one symbol table: kernel commits
# 55fcb926b6d8 and b4760ff2a5e4), and crash's module setup ends the whole session with
# "invalid structure member offset: module_num_gpl_syms" unless --no_modules skips it, after
# which "mod" has nothing to list.  "kmem -s" stops at "invalid structure member offset:
# kmem_cache_local_node": 7.x's struct kmem_cache holds its node pointers in per_node[],
# neither the node[] nor the local_node crash looks for.  drgn reads both on 7.2.
CRASH_LIMITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "7.2": (("--no_modules",), ("mod", "kmem -s")),
}


@pytest.fixture(scope="module", params=DEBUG_KERNELS)
def cycle(request) -> CycleResult:
    return main_cycle(request.param)


@pytest.fixture(scope="module", params=CRASH_KERNELS)
def crash_case(request) -> tuple[str, CycleResult]:
    return request.param, main_cycle(request.param)


def vmlinux_of(cycle: CycleResult):
    try:
        return debkernels.fetch_dbg(cycle.release)
    except debkernels.NotOffered as e:
        pytest.skip(str(e))


def crash_outputs(
    crash: str, vmlinux, dump, options: tuple[str, ...], commands: tuple[str, ...]
) -> dict[str, list[str]]:
    """Each command's output lines from one crash session on ``dump``."""
    script = "".join(f"echo {MARK} {c}\n{c}\n" for c in commands) + "quit\n"
    p = subprocess.run(
        [crash, "-s", "--no_scroll", *options, str(vmlinux), str(dump)],
        input=script,
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = p.stdout + p.stderr
    assert p.returncode == 0, f"crash exited {p.returncode} on {dump}:\n{text[-3000:]}"
    out: dict[str, list[str]] = {}
    cmd = "(start)"
    for line in text.splitlines():
        if line.startswith(MARK):
            cmd = line[len(MARK) :].strip()
            continue
        out.setdefault(cmd, []).append(line)
    return out


def test_crash_answers_the_same_on_the_d31_dump_as_on_the_raw_vmcore(crash_case):
    series, cycle = crash_case
    cycle.check(0)
    vmlinux = vmlinux_of(cycle)
    crash = crashbuild.crash_for(cycle.release)
    options, left_out = CRASH_LIMITS.get(series, ((), ()))
    commands = tuple(c for c in CRASH_COMMANDS if c not in left_out)
    raw = crash_outputs(crash, vmlinux, cycle.path("vmcore"), options, commands)
    dump = crash_outputs(crash, vmlinux, cycle.path("df31.kdump"), options, commands)
    # crash read the kernel at all: the panic, the panicking task's stack, the tasks and, where
    # crash can list them, the slab caches (a row per cache, its name last).
    assert any("sysrq triggered crash" in line for line in raw["sys"]), raw["sys"]
    assert any("panic" in line for line in raw["bt -a"]), raw["bt -a"]
    assert any(line.split()[-1:] == ["init"] for line in raw["ps"]), raw["ps"]
    if "kmem -s" in commands:
        slabs = raw["kmem -s"]
        assert any(line.split()[-1:] == ["kmem_cache"] for line in slabs), slabs
    excluded = [line for lines in dump.values() for line in lines if "page excluded" in line]
    assert excluded == [], excluded
    assert list(dump) == list(raw)
    for cmd, lines in raw.items():
        want = [line for line in lines if not VOLATILE.match(line)]
        got = [line for line in dump[cmd] if not VOLATILE.match(line)]
        assert got == want, f"crash {cmd!r} differs on the filtered dump"


def drgn_answers(core, vmlinux) -> dict:
    """What a person debugging the crash asks drgn first."""
    import drgn
    from drgn.helpers.linux.module import for_each_module
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_dmesg
    from drgn.helpers.linux.sched import task_state_to_char
    from drgn.helpers.linux.slab import for_each_slab_cache

    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(vmlinux)])
    idt = prog["idt_table"]
    return {
        "crashed": [str(frame) for frame in prog.crashed_thread().stack_trace()],
        "tasks": sorted(
            (int(t.pid), t.comm.string_().decode(), task_state_to_char(t))
            for t in for_each_task(prog)
        ),
        "slabs": sorted(
            (s.name.string_().decode(), int(s.object_size)) for s in for_each_slab_cache(prog)
        ),
        "idt_table": prog.read(idt.address_, drgn.sizeof(idt)).hex(),
        "modules": sorted(m.name.string_().decode() for m in for_each_module(prog)),
        "printk": get_dmesg(prog).decode(errors="replace"),
    }


def test_drgn_answers_the_same_on_the_d31_dump_as_on_the_raw_vmcore(cycle):
    cycle.check(0)
    vmlinux = vmlinux_of(cycle)
    raw = drgn_answers(cycle.path("vmcore"), vmlinux)
    dump = drgn_answers(cycle.path("df31.kdump"), vmlinux)
    assert any("panic" in frame for frame in raw["crashed"]), raw["crashed"]
    assert any(comm == "init" for _pid, comm, _st in raw["tasks"]), raw["tasks"]
    assert "sysrq triggered crash" in raw["printk"]
    assert raw["idt_table"].strip("0"), "idt_table reads as zeros"
    for key in raw:
        assert dump[key] == raw[key], f"drgn's {key} differs on the filtered dump"
