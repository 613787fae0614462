"""Debian's kdump-tools, unmodified, saves a real crash with dumpfilter in makedumpfile's place.

``kdump-config savecore`` (Debian's kdump-tools, run by its kdump-tools-dump.service in the
capture kernel) saves a crash as

    makedumpfile --dump-dmesg /proc/vmcore $KDUMP_COREDIR/$STAMP/dmesg.$STAMP
    makedumpfile $MAKEDUMP_ARGS /proc/vmcore | compress > $KDUMP_COREDIR/$STAMP/dump-incomplete

then renames dump-incomplete to dump.$STAMP ($STAMP is ``date +%Y%m%d%H%M``).  It falls back
to ``cp /proc/vmcore`` (vmcore.$STAMP) when that pipeline fails, and a pipeline's status is
its last command's, ``compress``'s (dash has no pipefail): when makedumpfile fails, what it
wrote is saved as dump.$STAMP and nothing is copied.  It appends ``-F`` to
MAKEDUMP_ARGS (default ``-F -c -d 31``), so the dump it saves is always a flattened stream,
which ``makedumpfile -R`` turns into a kdump-compressed file.  kdump-tools never runs -R
itself (its ssh and ftp targets get the same stream): users do, after the fact, and here the
host does, with Debian's makedumpfile and with dumpfilter.  It sets its own PATH
(/bin:/usr/bin:/sbin:/usr/sbin): the ``makedumpfile`` it runs is /usr/bin/makedumpfile, where
the README's "Use it with kdump-tools" puts dumpfilter with dpkg-divert.

One QEMU cycle on Debian's stock 6.1 (the kernel bookworm's kdump-tools ships with): in the
capture kernel, the real kdump-config from Debian's package (unpacked into the cache by
debkernels.py, never installed) runs ``savecore`` once per MAKEDUMP_ARGS variant, each with
Debian's conffile edited as an administrator would (KDUMP_COREDIR, MAKEDUMP_ARGS).  The host
root is read-only there and its own makedumpfile is other tests' oracle, so the state the divert
leaves is made with bind mounts in the capture kernel only: dumpfilter's command over
/usr/bin/makedumpfile, a writable copy of /etc/default for the conffile, a fresh /run.

The host then checks what the service left, against the raw /proc/vmcore of the same crash and
tools nobody here wrote: Debian's makedumpfile 1.7.2 (rebuilds the stream with -R; its own
``--dump-dmesg`` of the raw vmcore), makedumpfile 1.7.9 (its ``-d 31`` of the raw vmcore: the
kept pages; 1.7.2 would leave out the page a PT_LOAD holds in part, test_makedumpfile.py),
libkdumpfile, drgn and crash.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import debkernels
import kdumpvm
from conftest import DUMPFILTER, remember_cycle
from e2elib import (
    RawVmcore,
    kdump_bitmap1,
    kdump_bitmap2,
    kdump_header,
    readback_drgn,
    readback_libkdumpfile,
)

MAKEDUMPFILE = "/usr/bin/makedumpfile"  # Debian's, on the host: the oracle
KDUMP_PATH = "/bin:/usr/bin:/sbin:/usr/sbin"  # what kdump-config sets
SHIM = kdumpvm.REPO / ".venv" / "bin" / "dumpfilter"  # the command the README's divert links
# name: MAKEDUMP_ARGS written into the conffile (None: left commented out, as Debian ships it)
VARIANTS = {
    "default": None,
    "lzo": "-l -d 31",
    "zstd": "-z -d 31",
    "zlib-ml7": "-c -d 31 --message-level 7",
}
# disk_dump_header.status bits of the page codec (makedumpfile's diskdump_mod.h)
CODEC = {"default": 0x1, "lzo": 0x2, "zstd": 0x20, "zlib-ml7": 0x1}
CODEC_BITS = 0x1 | 0x2 | 0x4 | 0x20
# A MAKEDUMP_ARGS every makedumpfile refuses: what the service does when its makedumpfile fails.
FAILING = ("bad-level", "-c -d 32")
# The dmesg command line does not depend on MAKEDUMP_ARGS: only the variant with Debian's
# conffile as shipped saves it, the others set KDUMP_DUMP_DMESG=0 (a Python start less each).
DMESG = "default"
# Debian's kdump-tools reserves crashkernel=384M-:128M (its grub.d snippet): the capture
# kernel gets what it gets on a default Debian install.
CRASHKERNEL = "128M"
GUEST_OUT = "/tmp/work"  # the cycle directory as the capture commands see it


def _kdump_tools() -> Path:
    return debkernels.package_dir("kdump-tools")


def _setup_cmd() -> str:
    return "\n".join(
        [
            "set -e",
            "cp -a /etc/default /tmp/etc-default",
            "mount --bind /tmp/etc-default /etc/default",
            "mount -t tmpfs run /run",
            f"mount --bind {shlex.quote(str(SHIM))} {MAKEDUMPFILE}",
            f"export PATH={KDUMP_PATH}",
            "command -v makedumpfile",
            "makedumpfile -v",
        ]
    )


def _savecore_cmd(name: str, args: str | None) -> str:
    kdt = _kdump_tools()
    edits = [f's|^KDUMP_COREDIR=.*|KDUMP_COREDIR="{GUEST_OUT}/kdump-{name}"|']
    if args is not None:
        edits.append(f's|^#MAKEDUMP_ARGS=.*|MAKEDUMP_ARGS="{args}"|')
    if name != DMESG:
        edits.append("s|^#KDUMP_DUMP_DMESG=.*|KDUMP_DUMP_DMESG=0|")
    sed = " ".join(f"-e {shlex.quote(e)}" for e in edits)
    conf = shlex.quote(str(kdt / "usr/share/kdump-tools/kdump-tools.conf"))
    return (
        f"sed {sed} {conf} > /etc/default/kdump-tools && "
        f"{shlex.quote(str(kdt / 'usr/sbin/kdump-config'))} savecore"
    )


@cache
def _cycle() -> kdumpvm.CycleResult:
    r = kdumpvm.run_kdump_cycle(
        kdumpvm.stock_kernel("6.1"),
        capture_cmds=[
            _setup_cmd(),
            *(_savecore_cmd(n, a) for n, a in VARIANTS.items()),
            _savecore_cmd(*FAILING),
        ],
        save_raw=True,
        crashkernel=CRASHKERNEL,
        tag="kdump-tools",
    )
    remember_cycle("6.1 kdump-tools", r)
    return r


@pytest.fixture(scope="module")
def kt() -> kdumpvm.CycleResult:
    return _cycle()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Host-side outputs of this module's tests: rebuilt dumps, makedumpfile's."""
    return tmp_path_factory.mktemp("kdump-tools")


def _cmd(name: str) -> int:
    return 1 + [*VARIANTS, FAILING[0]].index(name)


def _stampdir(r: kdumpvm.CycleResult, name: str) -> Path:
    r.check(_cmd(name))
    entries = sorted((r.dir / f"kdump-{name}").iterdir())
    assert len(entries) == 1 and entries[0].is_dir(), f"KDUMP_COREDIR holds {entries}"
    return entries[0]


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, timeout=600, **kw)
    if p.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {p.returncode}:\n"
            + (p.stdout[-1000:] + p.stderr[-2000:]).decode(errors="replace")
        )
    return p


@cache
def _rebuilt(work: Path, name: str, tool: str) -> Path:
    """The saved flattened dump rebuilt into a kdump-compressed file by ``tool``'s -R."""
    stamp = _stampdir(_cycle(), name)
    out = work / f"rebuilt-{tool}-{name}.kdump"
    argv = [MAKEDUMPFILE] if tool == "makedumpfile" else DUMPFILTER
    with open(stamp / f"dump.{stamp.name}", "rb") as stream:
        _run([*argv, "-R", str(out)], stdin=stream)
    return out


@cache
def _makedumpfile_of_raw(work: Path, makedumpfile: str, *opts: str) -> Path:
    """``makedumpfile`` with ``opts`` on the raw vmcore of the same crash."""
    r = _cycle()
    out = work / ("makedumpfile" + "".join(opts))  # one oracle per option set
    _run([makedumpfile, *opts, str(r.path("vmcore")), str(out)])
    return out


def test_the_scripts_the_capture_kernel_ran_are_debians_unmodified(kt):
    """kdump-config and the conffile it was made from are the package's: their md5sums
    are the ones in the package's control data."""
    kdt = _kdump_tools()
    sums = dict(
        reversed(line.split(None, 1)) for line in (kdt / "DEBIAN/md5sums").read_text().splitlines()
    )
    for f in ("usr/sbin/kdump-config", "usr/share/kdump-tools/kdump-tools.conf"):
        assert hashlib.md5((kdt / f).read_bytes()).hexdigest() == sums[f], f
        assert str(kdt / f) in "".join(kt.cmds), f"the capture kernel did not use {f}"


def test_the_makedumpfile_kdump_config_runs_is_dumpfilter(kt):
    from dumpfilter import __version__

    kt.check(0)
    found, *version = kt.log(0).split()
    # found in kdump-config's PATH: /bin/makedumpfile, the same file (merged /usr)
    assert Path(found).resolve() == Path(MAKEDUMPFILE).resolve(), kt.log(0)
    assert version == ["dumpfilter", __version__], kt.log(0)


@pytest.mark.parametrize("name", VARIANTS)
def test_savecore_runs_dumpfilter_with_the_services_arguments_and_no_cp_fallback(kt, name):
    kt.check(_cmd(name))
    log = kt.log(_cmd(name))
    args = VARIANTS[name]
    want = "-F -c -d 31" if args is None else f"{args} -F"
    m = re.search(r"running makedumpfile (.*) /proc/vmcore \| compress > (\S+)/dump-incomp", log)
    assert m, log
    assert m.group(1) == want, log
    assert m.group(2).startswith(f"{GUEST_OUT}/kdump-{name}/"), log
    assert "falling back to 'cp'" not in log, log
    assert "saved vmcore in" in log, log
    assert ("saved dmesg content in" in log) == (name == DMESG), log


@pytest.mark.parametrize("name", VARIANTS)
def test_savecore_leaves_dump_and_dmesg_under_a_timestamp_and_nothing_else(kt, name):
    stamp = _stampdir(kt, name)
    time.strptime(stamp.name, "%Y%m%d%H%M")  # kdump-config's stamp: a minute, 12 digits
    assert len(stamp.name) == 12
    files = sorted(p.name for p in stamp.iterdir())
    want = [f"dump.{stamp.name}"] + ([f"dmesg.{stamp.name}"] if name == DMESG else [])
    assert files == sorted(want), files


@pytest.mark.parametrize("name", VARIANTS)
def test_saved_dump_is_a_stream_makedumpfile_rebuilds_into_the_kdump_file_asked_for(kt, name, work):
    stamp = _stampdir(kt, name)
    with open(stamp / f"dump.{stamp.name}", "rb") as f:
        assert f.read(13) == b"makedumpfile\0", "-F: a flattened stream, not an ELF copy"
    theirs = _rebuilt(work, name, "makedumpfile")
    h = kdump_header(theirs)
    assert h["release"] == kt.release
    assert h["dump_level"] == 31
    assert h["status"] & CODEC_BITS == CODEC[name], hex(h["status"])
    assert not h["status"] & 0x8, "marked incomplete (DUMP_DH_COMPRESSED_INCOMPLETE)"
    assert h["max_mapnr"] == RawVmcore(kt.path("vmcore")).max_pfn
    # `makedumpfile -R` through the divert is dumpfilter's -R: the same file
    assert _rebuilt(work, name, "dumpfilter").read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("name", VARIANTS)
def test_saved_dump_keeps_the_pages_makedumpfile_keeps_at_d31(kt, name, work, makedumpfile_179):
    ours = _rebuilt(work, name, "makedumpfile")
    oracle = _makedumpfile_of_raw(work, makedumpfile_179, "-d", "31")
    assert np.array_equal(kdump_bitmap1(ours), kdump_bitmap1(oracle)), "RAM bitmaps differ"
    a, b = kdump_bitmap2(ours), kdump_bitmap2(oracle)
    assert np.array_equal(a, b), (
        f"kept only in the service's dump: {np.flatnonzero(a & ~b)[:10]}, "
        f"only in makedumpfile's: {np.flatnonzero(b & ~a)[:10]}"
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_saved_dump_reads_back_page_exact(kt, name, tmp_path, work):
    """Every kept page equals the raw vmcore's, read by libkdumpfile from the rebuilt file
    and by drgn from the flattened dump as the service saved it; excluded pages are absent."""
    raw = RawVmcore(kt.path("vmcore"))
    rebuilt = _rebuilt(work, name, "makedumpfile")
    kept = kdump_bitmap2(rebuilt)
    ram = raw.ram()
    assert len(kept) == raw.max_pfn and not np.any(kept & ~ram)
    readback_libkdumpfile(rebuilt, raw, kept, ram & ~kept, tmp_path)
    stamp = _stampdir(kt, name)
    readback_drgn(stamp / f"dump.{stamp.name}", raw, kept, ram & ~kept)


def test_saved_dmesg_is_makedumpfiles_dmesg_of_the_crash(kt, work):
    stamp = _stampdir(kt, DMESG)
    saved = (stamp / f"dmesg.{stamp.name}").read_bytes()
    assert b"sysrq triggered crash" in saved
    assert saved == _makedumpfile_of_raw(work, MAKEDUMPFILE, "--dump-dmesg").read_bytes()


def test_a_failing_makedumpfile_leaves_an_empty_dump_and_no_vmcore(kt):
    """What README "Use it with kdump-tools" warns of: dumpfilter refuses the arguments with
    one line, and kdump-config, which sees only compress's exit status, reports success with
    an empty dump.<stamp> and no cp fallback."""
    name, args = FAILING
    log = kt.log(_cmd(name))
    assert f"running makedumpfile {args} -F /proc/vmcore | compress" in log, log
    assert [line for line in log.splitlines() if line.startswith("dumpfilter:")], log
    assert "falling back to 'cp'" not in log and "saved vmcore in" in log, log
    stamp = _stampdir(kt, name)
    assert sorted(p.name for p in stamp.iterdir()) == [f"dump.{stamp.name}"]
    assert (stamp / f"dump.{stamp.name}").stat().st_size == 0


def test_crash_and_drgn_open_the_dump_as_the_service_saved_it(kt):
    """crash reads the release from the flattened file; drgn (no debug info) reads
    init_uts_ns through the dump's own page tables, at the address VMCOREINFO gives."""
    import drgn

    stamp = _stampdir(kt, DMESG)
    dump = stamp / f"dump.{stamp.name}"
    p = _run(["crash", "--osrelease", str(dump)], text=False)
    assert p.stdout.decode().strip() == kt.release
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    info = dict(
        line.split("=", 1)
        for line in prog["VMCOREINFO"].string_().decode().splitlines()
        if "=" in line
    )
    # struct new_utsname: sysname, nodename, release, ... each char[65]
    addr = int(info["SYMBOL(init_uts_ns)"], 16) + int(info["OFFSET(uts_namespace.name)"]) + 2 * 65
    assert prog.read(addr, 65).split(b"\0")[0].decode() == kt.release
