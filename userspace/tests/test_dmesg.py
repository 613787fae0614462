"""--dump-dmesg: printk rings laid out here byte by byte, read back through dmesg.py.

The ring writer below follows the kernel's allocation rules (printk_ringbuffer.c): descriptor
ids count up from DESC0_ID and wrap at 2**62, data blocks ``{id, text}`` are 8-byte aligned
and a block that would cross the end of the text ring is placed at offset 0; overwritten
records become ``desc_reusable`` while the tail id lags behind.  Struct layouts are those of
x86_64 Linux 6.1 (the VMCOREINFO values are what a 6.1 kernel exports).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import time

import numpy as np
import pytest
from fakes import (
    cached_vmcores,
)
from printk_ring import (
    COMMITTED,
    DATA_VA,
    DESCS_VA,
    FINALIZED,
    ID_MASK,
    INFOS_VA,
    RB_VA,
    RESERVED,
    REUSABLE,
    VMCOREINFO_61,
    Memory,
    Ring,
)

from dumpfilter import dmesg
from dumpfilter.errors import DumpError


def read(ring: Ring, info=VMCOREINFO_61) -> dmesg.Log:
    return dmesg.read_log(ring.memory().read, info)


def test_records_print_with_kernel_timestamp_prefix_in_order():
    ring = Ring()
    ring.add(b"Linux version 6.1.0-synthetic-amd64", 0)
    ring.add(b"Command line: console=ttyS0", 1_234_567_890)
    ring.add(b"sysrq: Trigger a crash", 61_000_001_000, state=COMMITTED)
    out = dmesg.format_records(read(ring).records)
    assert out == (
        b"[    0.000000] Linux version 6.1.0-synthetic-amd64\n"
        b"[    1.234567] Command line: console=ttyS0\n"
        b"[   61.000001] sysrq: Trigger a crash\n"
    )


def test_multiline_record_continuation_lines_are_indented_under_the_text():
    ring = Ring()
    ring.add(b"Kernel panic - not syncing: sysrq triggered crash\nCPU: 0 PID: 1\n", 5 * 10**9)
    out = dmesg.format_records(read(ring).records)
    assert out.split(b"\n") == [
        b"[    5.000000] Kernel panic - not syncing: sysrq triggered crash",
        b"               CPU: 0 PID: 1",
        b"               ",
        b"",
    ]


def test_record_without_text_is_read_but_not_printed():
    ring = Ring()
    ring.add(b"before", 1000)
    ring.add(b"", 2000)  # NO_LPOS: a data-less block
    ring.add(b"after", 3000)
    log = read(ring)
    assert [r.text for r in log.records] == [b"before", b"", b"after"]
    assert dmesg.format_records(log.records) == b"[    0.000001] before\n[    0.000003] after\n"


def test_control_bytes_are_escaped_but_utf8_kept():
    ring = Ring()
    ring.add("bell\x07 esc\x1b tab\t cr\r café".encode(), 0)
    assert dmesg.format_records(read(ring).records) == (
        "[    0.000000] bell\\x07 esc\\x1b tab\t cr\r café\n".encode()
    )


def test_caller_id_prefix_marks_tasks_and_cpus():
    ring = Ring()
    ring.add(b"from task", 0, caller=1)
    ring.add(b"from cpu", 0, caller=0x80000000 | 3)
    ring.add(b"two\nlines", 0, caller=7)
    out = dmesg.format_records(read(ring).records, caller=True)
    assert out == (
        b"[    0.000000][    T1] from task\n[    0.000000][    C3] from cpu\n"
        b"[    0.000000][    T7] two\n                       lines\n"
    )


def test_wrapped_rings_keep_exactly_the_records_not_overwritten():
    ring = Ring(count_bits=4, size_bits=9)
    rng = np.random.default_rng(7)
    texts = []
    for i in range(500):  # many laps of both the 16-slot descriptor ring and the 512-byte text
        text = f"message {i} ".encode() + b"x" * int(rng.integers(0, 60))
        texts.append(text)
        ring.add(text, i * 1000)
    live_ids = {r[0] for r in ring.live}
    log = read(ring)
    got = [r.text for r in log.records]
    assert len(got) == len(live_ids) >= 3
    assert got == texts[-len(got) :]
    assert [r.seq for r in log.records] == list(range(500 - len(got), 500))


def test_ids_crossing_the_2_pow_62_wrap_are_followed():
    ring = Ring(count_bits=3, size_bits=10)
    for i in range(12):  # DESC0_ID is 2**62 - 9: the ids wrap to 0 within these records
        ring.add(f"r{i}".encode(), i)
    assert ring.head_id < ring.tail_id  # the walk crosses the wrap
    assert [r.text for r in read(ring).records] == [f"r{i}".encode() for i in range(4, 12)]


def test_block_wrapping_to_ring_start_is_read_from_offset_zero():
    ring = Ring(count_bits=5, size_bits=8)
    ring.add(b"a" * 100, 0)
    ring.add(b"b" * 100, 1)  # 224 bytes used of 256: the next block does not fit at the end
    did = ring.add(b"c" * 60, 2)
    begin, nxt = [(b, n) for i, b, n in ring.live if i == did][0]
    assert begin % 256 != 0 and nxt % 256 == 72  # stored at offset 0 of the next wrap
    assert [r.text for r in read(ring).records][-1] == b"c" * 60


def test_reserved_reusable_and_failed_records_are_skipped():
    ring = Ring(count_bits=5, size_bits=10)
    ring.add(b"good 1", 1)
    bad = ring.add(b"overwritten", 2)
    ring.set_state(bad, REUSABLE)
    ring.add(b"lost text", 3, failed=True)
    ring.add(b"good 2", 4)
    ring.add(b"being written", 5, state=RESERVED)
    log = read(ring)
    assert [r.text for r in log.records] == [b"good 1", b"good 2"]
    assert log.skipped == 1  # only the failed text; reusable/reserved slots are normal


def test_descriptor_with_stale_id_is_skipped():
    ring = Ring(count_bits=4, size_bits=10)
    ring.add(b"one", 1)
    did = ring.add(b"two", 2)
    off = (did % ring.count) * 24
    struct.pack_into("<Q", ring.descs, off, (FINALIZED << 62) | ((did - 16) & ID_MASK))
    assert [r.text for r in read(ring).records] == [b"one"]


def test_text_len_longer_than_block_is_clamped_to_the_block():
    ring = Ring(count_bits=4, size_bits=10)
    did = ring.add(b"short", 1)
    struct.pack_into("<H", ring.infos, (did % ring.count) * 88 + 16, 60000)
    (rec,) = read(ring).records
    assert rec.text.startswith(b"short") and len(rec.text) == 8  # 16-byte block minus its id


@pytest.mark.parametrize(
    "field, value, message",
    [
        (0, 0, "count_bits=0"),  # count_bits
        (0, 40, "count_bits=40"),
        (0, 12, "count_bits=12"),  # more descriptors than the 512-byte text ring has bytes
        (48, 0, "size_bits=0"),  # text ring size_bits
        (32, 5, "records behind head"),  # tail id far from head
    ],
)
def test_corrupt_ring_metadata_is_one_line_dumperror(field, value, message):
    ring = Ring()
    ring.add(b"x", 0)
    mem = ring.memory()
    struct.pack_into("<Q" if field == 32 else "<I", mem.regions[RB_VA], field, value)
    with pytest.raises(DumpError, match=message) as e:
        dmesg.read_log(mem.read, VMCOREINFO_61)
    assert "\n" not in str(e.value)


def test_missing_vmcoreinfo_key_names_the_key():
    info = dict(VMCOREINFO_61)
    del info["OFFSET(prb_desc_ring.infos)"]
    with pytest.raises(DumpError, match=r"OFFSET\(prb_desc_ring.infos\)"):
        read(Ring(), info)


def test_no_log_symbols_at_all_is_dumperror():
    with pytest.raises(DumpError, match="SYMBOL"):
        dmesg.read_log(Memory().read, {"OSRELEASE": "6.1.0"})


def test_unmapped_ring_pointer_is_dumperror():
    ring = Ring()
    ring.add(b"x", 0)
    mem = ring.memory()
    del mem.regions[DATA_VA]
    with pytest.raises(DumpError, match="not mapped"):
        dmesg.read_log(mem.read, VMCOREINFO_61)


def test_random_garbage_ring_ends_quickly_with_error_or_text():
    rng = np.random.default_rng(1)
    for trial in range(200):
        ring = Ring(count_bits=6, size_bits=12)
        for i in range(int(rng.integers(1, 80))):
            ring.add(b"m" * int(rng.integers(0, 90)), i)
        mem = ring.memory()
        for base in (DESCS_VA, INFOS_VA, DATA_VA):
            buf = mem.regions[base]
            n = int(rng.integers(1, 64))
            pos = rng.integers(0, len(buf), n)
            buf_np = np.frombuffer(buf, dtype=np.uint8).copy()
            buf_np[pos] = rng.integers(0, 256, n, dtype=np.uint8)
            mem.regions[base] = bytearray(buf_np.tobytes())
        if trial % 3 == 0:  # head id anywhere, including far away
            struct.pack_into("<Q", mem.regions[RB_VA], 24, int(rng.integers(0, 1 << 62)))
        t0 = time.monotonic()
        try:
            log = dmesg.read_log(mem.read, VMCOREINFO_61)
            dmesg.format_records(log.records)
        except DumpError as e:
            assert "\n" not in str(e)
        assert time.monotonic() - t0 < 1.0


# --- --partial-dmesg: only what was logged since the last clear ------------------------------

CLEAR_VA = int(VMCOREINFO_61["SYMBOL(clear_seq)"], 16)
VMCOREINFO_510 = {k: v for k, v in VMCOREINFO_61.items() if "latched_seq" not in k}  # u64


def _partial(ring: Ring, clear: bytes, info=VMCOREINFO_61) -> list[bytes]:
    mem = ring.memory()
    mem.put(CLEAR_VA, clear)
    return [r.text for r in dmesg.read_log(mem.read, info, partial=True).records]


def test_partial_keeps_records_from_the_live_copy_of_the_latched_clear_seq():
    ring = Ring()
    for i in range(6):
        ring.add(f"line {i}".encode(), i * 10**9)
    # latch sequence 5 (odd): val[1] is the live copy; val[0] is a stale one
    assert _partial(ring, struct.pack("<IxxxxQQ", 5, 1, 4)) == [b"line 4", b"line 5"]
    assert _partial(ring, struct.pack("<IxxxxQQ", 6, 2, 4)) == [
        b"line 2",
        b"line 3",
        b"line 4",
        b"line 5",
    ]


def test_partial_reads_a_plain_clear_seq_when_it_is_not_latched():
    ring = Ring()
    for i in range(4):
        ring.add(f"line {i}".encode(), i)
    assert _partial(ring, struct.pack("<Q", 3), VMCOREINFO_510) == [b"line 3"]


def test_partial_after_a_clear_with_nothing_new_is_empty_not_an_error():
    ring = Ring()
    ring.add(b"only line", 0)
    assert _partial(ring, struct.pack("<IxxxxQQ", 0, 1, 0)) == []
    assert dmesg.format_records([]) == b""


def test_partial_without_clear_seq_in_vmcoreinfo_is_dumperror():
    ring = Ring()
    ring.add(b"x", 0)
    info = {k: v for k, v in VMCOREINFO_61.items() if k != "SYMBOL(clear_seq)"}
    with pytest.raises(DumpError, match="clear_seq"):
        dmesg.read_log(ring.memory().read, info, partial=True)


# --- legacy (3.5 .. 5.9) structured log_buf -------------------------------------------------

LOG_BUF_PTR, LOG_BUF_LEN, FIRST_IDX, NEXT_IDX = (0xFFFFFFFF81F00000 + 0x100 * i for i in range(4))
LOG_BUF_VA = 0xFFFF888003000000
VMCOREINFO_LEGACY = {
    "SYMBOL(log_buf)": f"{LOG_BUF_PTR:x}",
    "SYMBOL(log_buf_len)": f"{LOG_BUF_LEN:x}",
    "SYMBOL(log_first_idx)": f"{FIRST_IDX:x}",
    "SYMBOL(clear_idx)": "ffffffff81f00400",
    "SYMBOL(log_next_idx)": f"{NEXT_IDX:x}",
    "SIZE(printk_log)": "16",
    "OFFSET(printk_log.ts_nsec)": "0",
    "OFFSET(printk_log.len)": "8",
    "OFFSET(printk_log.text_len)": "10",
    "OFFSET(printk_log.dict_len)": "12",
}


def legacy_memory(texts: list[bytes], buf_len: int = 256) -> tuple[Memory, list[bytes]]:
    """Store records like log_store(): drop the oldest until there is room, 8-aligned records,
    and a zeroed header where the writer wraps to index 0."""
    buf = bytearray(buf_len)
    live: list[tuple[int, bytes]] = []  # (idx, text), oldest first
    first = nxt = 0
    for i, text in enumerate(texts):
        size = (16 + len(text) + 7) & ~7

        def has_space(nxt: int = nxt, first: int = first, size: int = size) -> bool:
            free = max(buf_len - nxt, first) if not live or nxt > first else first - nxt
            return free >= size + 16

        while live and not has_space(nxt, first):
            live.pop(0)
            first = live[0][0] if live else nxt
        if nxt + size + 16 > buf_len:
            buf[nxt : nxt + 16] = bytes(16)
            nxt = 0
        struct.pack_into("<QHHH", buf, nxt, i * 1000, size, len(text), 0)
        buf[nxt + 16 : nxt + 16 + len(text)] = text
        live.append((nxt, text))
        if len(live) == 1:
            first = nxt
        nxt += size
    mem = Memory()
    mem.put(LOG_BUF_PTR, struct.pack("<Q", LOG_BUF_VA))
    mem.put(LOG_BUF_LEN, struct.pack("<I", buf_len))
    mem.put(FIRST_IDX, struct.pack("<I", first))
    mem.put(NEXT_IDX, struct.pack("<I", nxt))
    mem.put(LOG_BUF_VA, buf)
    return mem, [t for _, t in live]


def test_legacy_log_buf_records_across_the_wrap():
    texts = [f"legacy line {i}".encode() for i in range(30)]
    mem, kept = legacy_memory(texts)
    log = dmesg.read_log(mem.read, VMCOREINFO_LEGACY)
    assert log.kind == "legacy"
    assert [r.text for r in log.records] == kept
    assert 3 <= len(kept) < 30 and kept[-1] == b"legacy line 29"
    assert dmesg.format_records(log.records).endswith(b"] legacy line 29\n")


def _legacy_clear_idx(mem: Memory, record: int | None) -> None:
    """Point clear_idx at the index of live record ``record`` (None: at log_next_idx)."""
    buf = mem.regions[LOG_BUF_VA]
    idx = struct.unpack("<I", mem.regions[FIRST_IDX])[0]
    nxt = struct.unpack("<I", mem.regions[NEXT_IDX])[0]
    for _ in range(record if record is not None else 10**6):
        if idx == nxt:
            break
        length = struct.unpack_from("<H", buf, idx + 8)[0] if idx + 16 <= len(buf) else 0
        if length == 0:
            idx = 0
            length = struct.unpack_from("<H", buf, 8)[0]
        idx += length
    mem.put(int(VMCOREINFO_LEGACY["SYMBOL(clear_idx)"], 16), struct.pack("<I", idx))


def test_legacy_partial_starts_at_clear_idx_across_the_wrap():
    mem, kept = legacy_memory([f"legacy line {i}".encode() for i in range(30)])
    for n in range(len(kept)):
        _legacy_clear_idx(mem, n)
        log = dmesg.read_log(mem.read, VMCOREINFO_LEGACY, partial=True)
        assert [r.text for r in log.records] == kept[n:]
    _legacy_clear_idx(mem, None)  # cleared after the last record
    assert dmesg.read_log(mem.read, VMCOREINFO_LEGACY, partial=True).records == []


def test_legacy_partial_with_clear_idx_overwritten_keeps_everything():
    mem, kept = legacy_memory([f"legacy line {i}".encode() for i in range(30)])
    mem.put(int(VMCOREINFO_LEGACY["SYMBOL(clear_idx)"], 16), struct.pack("<I", 4))  # no record
    log = dmesg.read_log(mem.read, VMCOREINFO_LEGACY, partial=True)
    assert [r.text for r in log.records] == kept


def test_legacy_broken_chain_is_dumperror_not_a_hang():
    mem, _ = legacy_memory([f"l{i}".encode() for i in range(30)])
    mem.regions[NEXT_IDX][:] = struct.pack("<I", 4)  # never reached: records are 8-aligned
    with pytest.raises(DumpError, match="log_next_idx"):
        dmesg.read_log(mem.read, VMCOREINFO_LEGACY)


# --- output file -------------------------------------------------------------------------


def test_output_file_is_not_overwritten_without_force(tmp_path):
    target = tmp_path / "dmesg.txt"
    target.write_bytes(b"old")
    with pytest.raises(DumpError, match="exists"):
        dmesg._write_file(str(target), b"new", force=False)
    assert target.read_bytes() == b"old"
    dmesg._write_file(str(target), b"new", force=True)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["dmesg.txt"]  # no temporary file left behind


# --- real vmcores from the QEMU kdump harness, when cached ----------------------------------


CLEAR_MARK = b"dumpfilter-e2e: kernel log cleared"  # qemu-tests/guest/init.sh


def _cached_vmcores() -> list[str]:
    return [str(p) for p in cached_vmcores()]


@pytest.mark.realdump
@pytest.mark.skipif(not _cached_vmcores(), reason="no real vmcore cached by qemu-tests")
@pytest.mark.parametrize("vmcore", _cached_vmcores())
def test_real_vmcore_log_matches_makedumpfile_and_has_the_panic(vmcore, tmp_path):
    from dumpfilter import cli

    out = tmp_path / "dmesg.txt"
    assert cli.main(["--dump-dmesg", vmcore, str(out)]) == 0
    text = out.read_bytes()
    assert text.count(b"\n") > 100
    assert b"Kernel panic - not syncing: sysrq triggered crash" in text
    mdf = "/usr/bin/makedumpfile"
    if os.access(mdf, os.X_OK):  # an oracle we did not write: the same bytes
        ref = tmp_path / "mdf.txt"
        subprocess.run([mdf, "--dump-dmesg", vmcore, str(ref)], check=True, capture_output=True)
        assert text == ref.read_bytes()


@pytest.mark.realdump
@pytest.mark.skipif(not _cached_vmcores(), reason="no real vmcore cached by qemu-tests")
@pytest.mark.parametrize("vmcore", _cached_vmcores())
def test_real_vmcore_partial_log_is_makedumpfiles_and_starts_after_the_clear(vmcore, tmp_path):
    """The QEMU guest clears its log (``dmesg -C``) and logs a marker before the crash."""
    from dumpfilter import cli

    full, part = tmp_path / "full.txt", tmp_path / "part.txt"
    assert cli.main(["--dump-dmesg", vmcore, str(full)]) == 0
    assert cli.main(["--dump-dmesg", "--partial-dmesg", vmcore, str(part)]) == 0
    text = part.read_bytes()
    assert full.read_bytes().endswith(text)
    assert b"] Kernel panic - not syncing: sysrq triggered crash\n" in text
    if CLEAR_MARK in full.read_bytes():  # cycles from before the guest cleared have no marker
        assert text.startswith(b"[") and CLEAR_MARK in text.splitlines()[0]
        assert b"Linux version" not in text
    mdf = "/usr/bin/makedumpfile"
    if os.access(mdf, os.X_OK):
        ref = tmp_path / "mdf.txt"
        cmd = [mdf, "--dump-dmesg", "--partial-dmesg", vmcore, str(ref)]
        subprocess.run(cmd, check=True, capture_output=True)
        assert text == ref.read_bytes()


def test_partial_dmesg_alone_is_a_usage_error(capsys):
    from dumpfilter import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--partial-dmesg", "vmcore", "out"])
    assert e.value.code == 1 and "--partial-dmesg needs --dump-dmesg" in capsys.readouterr().err


@pytest.mark.realdump
@pytest.mark.skipif(not _cached_vmcores(), reason="no real vmcore cached by qemu-tests")
def test_real_vmcore_log_to_stdout_without_file(capsysbinary):
    from dumpfilter import cli

    assert cli.main(["--dump-dmesg", _cached_vmcores()[0]]) == 0
    assert b"] Kernel panic - not syncing: sysrq triggered crash\n" in capsysbinary.readouterr().out


# --- a layout in VMCOREINFO that is not the ring's is an error, not a fraction of the log ----


@pytest.mark.parametrize(
    "key, value",
    [
        ("SIZE(prb_desc)", "4096"),
        ("SIZE(prb_desc)", "16"),
        ("SIZE(printk_info)", "4096"),
        ("SIZE(printk_info)", "80"),
    ],
)
def test_structure_sizes_that_do_not_fit_their_members_are_refused(key, value):
    ring = Ring()
    for i in range(10):
        ring.add(b"line %d" % i, i)
    with pytest.raises(DumpError, match=re.escape(f"{key}={value}")):
        read(ring, {**VMCOREINFO_61, key: value})


def test_records_whose_sequence_numbers_do_not_follow_are_a_layout_error():
    ring = Ring(count_bits=5, size_bits=10)
    for i in range(20):
        ring.add(b"line %d" % i, i)
    rng = np.random.default_rng(3)
    for slot in range(ring.count):  # what a wrong OFFSET(printk_info.seq) would read
        struct.pack_into("<Q", ring.infos, slot * 88, int(rng.integers(0, 1 << 62)))
    with pytest.raises(DumpError, match="sequence number"):
        read(ring)


def test_a_few_damaged_sequence_numbers_still_give_the_log():
    ring = Ring(count_bits=5, size_bits=10)
    for i in range(20):
        ring.add(b"line %d" % i, i)
    struct.pack_into("<Q", ring.infos, 7 * 88, 0)
    assert len(read(ring).records) == 20
