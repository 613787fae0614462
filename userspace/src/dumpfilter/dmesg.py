"""``--dump-dmesg``: the kernel log of the crashed kernel, as text.

Everything is located through VMCOREINFO alone (no vmlinux, no BTF):

* Linux 5.10+ (the lockless printk ring buffer, kernel/printk/printk_ringbuffer.h):
  ``log_buf_vmcoreinfo_setup()`` in kernel/printk/printk.c exports ``SYMBOL(prb)`` (the
  address of the ``struct printk_ringbuffer *prb`` variable) and the sizes and member offsets
  of printk_ringbuffer, prb_desc_ring, prb_desc, prb_data_blk_lpos, printk_info,
  prb_data_ring and ``OFFSET(atomic_long_t.counter)``.  The ring is a descriptor array
  (``descs``, ``1 << count_bits`` entries) and a parallel ``infos`` array (seq, ts_nsec,
  text_len, caller_id), plus a text data ring (``1 << size_bits`` bytes) of blocks
  ``{unsigned long id; char text[]}`` addressed by logical positions (lpos).
* Before 5.10 (structured ``log_buf``, 3.5 to 5.9): ``SYMBOL(log_buf)``, ``SYMBOL(log_buf_len)``,
  ``SYMBOL(log_first_idx)``, ``SYMBOL(log_next_idx)``, ``SIZE(printk_log)`` and offsets of
  ``printk_log.{ts_nsec,len,text_len}`` (``log`` instead of ``printk_log`` before 3.11).

Output is what ``makedumpfile --dump-dmesg`` writes (proven byte-identical on real 6.1 and 6.12
vmcores), so tooling that reads Debian's ``dmesg.<date>`` files keeps working:
``[%5lu.%06lu] `` before each record, continuation lines of a multi-line record indented with
spaces to the width of that prefix, records without text (data-less blocks) left out, control
bytes other than whitespace as ``\\xNN``.  Deliberate difference: bytes >= 0x80 (UTF-8) are kept
as they are.  Optionally the ``PRINTK_CALLER`` id ``[%6s]`` (``T<pid>``, or ``C<cpu>`` when bit 31
is set) follows the time, as the kernel prints it.

``--partial-dmesg`` keeps only what was logged since the log was last cleared (``dmesg -C``):
records whose seq is at least the lockless ring's ``clear_seq`` (``SYMBOL(clear_seq)``; since
5.13 a ``struct latched_seq {seqcount_latch_t latch; u64 val[2]}`` whose current value is
``val[latch.sequence & 1]``, ``OFFSET(latched_seq.val)``), or, in the legacy log_buf, the
records from ``SYMBOL(clear_idx)`` on.

A corrupt ring never hangs the reader: every walk is bounded by the ring's own capacity;
descriptors not in a readable state are passed over as the kernel's reader does, records whose
text block is inconsistent are skipped (and counted on stderr); unusable metadata is a
``DumpError``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import DumpError
from .vmcoreinfo import VmcoreInfo

ReadVirt = Callable[[int, int], bytes]

# Descriptor state lives in the top two bits of state_var (DESC_FLAGS_SHIFT = BITS_PER_LONG - 2);
# the rest is the descriptor id (printk_ringbuffer.h, 5.10+; x86_64 longs are 64 bits).
_SV_SHIFT = 62
_ID_MASK = (1 << _SV_SHIFT) - 1
_DESC_COMMITTED = 1
_DESC_FINALIZED = 2
# Data-less blocks have odd lpos values: NO_LPOS (3) for an empty text, FAILED_LPOS (1) when
# the text could not be stored.
_NO_LPOS = 0x3
# Kernel limits: log_buf_len <= 1 << 31 (LOG_BUF_LEN_MAX), descriptors = log_buf_len >> 5.
_MAX_SIZE_BITS = 31
_MAX_COUNT_BITS = 26
_CALLER_CPU = 0x80000000


@dataclass(frozen=True)
class Record:
    """One log record: sequence number, timestamp, caller id and raw text (no trailing NL)."""

    seq: int
    ts_nsec: int
    text: bytes
    caller_id: int | None = None


@dataclass
class Log:
    """All readable records in sequence order, and how many committed records had no
    readable text (reusable, reserved or recycled descriptors are normal and not counted)."""

    records: list[Record]
    skipped: int
    kind: str  # "lockless" or "legacy"


def _u(buf: bytes, off: int, size: int) -> int:
    """Little-endian unsigned field (x86_64) of a struct read into ``buf``."""
    if off < 0 or off + size > len(buf):
        raise DumpError("printk ring buffer: member offset outside its structure in VMCOREINFO")
    return int.from_bytes(buf[off : off + size], "little")


def _read(read_virt: ReadVirt, va: int, size: int, what: str) -> bytes:
    data = read_virt(va, size)
    if len(data) != size:
        raise DumpError(f"short read of {what} at {va:#x} ({len(data)} of {size} bytes)")
    return data


def _field_view(blob: bytes, count: int, stride: int, off: int, dtype: str) -> np.ndarray:
    """A strided numpy view of one member across an array of structs (no copy, no loop)."""
    width = np.dtype(dtype).itemsize
    if off < 0 or off + width > stride:
        raise DumpError("printk ring buffer: member offset outside its structure in VMCOREINFO")
    return np.ndarray((count,), dtype=dtype, buffer=blob, offset=off, strides=(stride,))


def read_lockless(read_virt: ReadVirt, vmcoreinfo: Mapping[str, str]) -> Log:
    """Read every committed/finalized record of the 5.10+ lockless ring, oldest first."""
    vi = VmcoreInfo(vmcoreinfo)
    ptr = _u(_read(read_virt, vi.symbol("prb"), 8, "the prb pointer"), 0, 8)
    rb = _read(read_virt, ptr, _sane_size(vi.size("printk_ringbuffer")), "printk_ringbuffer")
    counter = vi.offset("atomic_long_t.counter")

    dr = vi.offset("printk_ringbuffer.desc_ring")
    count_bits = _u(rb, dr + vi.offset("prb_desc_ring.count_bits"), 4)
    descs_va = _u(rb, dr + vi.offset("prb_desc_ring.descs"), 8)
    infos_va = _u(rb, dr + vi.offset("prb_desc_ring.infos"), 8)
    head_id = _u(rb, dr + vi.offset("prb_desc_ring.head_id") + counter, 8) & _ID_MASK
    tail_id = _u(rb, dr + vi.offset("prb_desc_ring.tail_id") + counter, 8) & _ID_MASK

    tr = vi.offset("printk_ringbuffer.text_data_ring")
    size_bits = _u(rb, tr + vi.offset("prb_data_ring.size_bits"), 4)
    data_va = _u(rb, tr + vi.offset("prb_data_ring.data"), 8)

    # The kernel sizes the descriptor ring from the text ring (log_buf_len >> PRB_AVGBITS), so
    # there are never more descriptors than text bytes.
    if not 0 < count_bits <= min(_MAX_COUNT_BITS, size_bits) or not 0 < size_bits <= _MAX_SIZE_BITS:
        raise DumpError(
            f"printk ring buffer is corrupt (count_bits={count_bits}, size_bits={size_bits})"
        )
    count = 1 << count_bits
    n = ((head_id - tail_id) & _ID_MASK) + 1
    if n > count:
        raise DumpError(
            f"printk ring buffer is corrupt (tail id {tail_id:#x} is "
            f"{n - 1} records behind head id {head_id:#x}, ring holds {count})"
        )

    lpos = vi.offset("prb_desc.text_blk_lpos")
    o_begin, o_next = vi.offset("prb_data_blk_lpos.begin"), vi.offset("prb_data_blk_lpos.next")
    o_state = vi.offset("prb_desc.state_var") + counter
    o_seq, o_ts = vi.offset("printk_info.seq"), vi.offset("printk_info.ts_nsec")
    o_tlen = vi.offset("printk_info.text_len")
    o_caller = vi.opt("OFFSET", "printk_info.caller_id")
    # Array strides must be the structures the members describe: a wrong one reads every
    # record but the first from the wrong place, and would print a fraction of the log.
    # 5.10's prb_desc also has a dict_blk_lpos (16 bytes) that VMCOREINFO does not describe.
    desc_end = max(o_state + 8, lpos + o_begin + 8, lpos + o_next + 8)
    desc_size = _struct_size(vi, "prb_desc", desc_end, 16)
    info_end = max(o_seq + 8, o_ts + 8, o_tlen + 2, 0 if o_caller is None else o_caller + 4)
    if vi.has("OFFSET(printk_info.dev_info)") and vi.has("SIZE(dev_printk_info)"):
        info_end = max(info_end, vi.offset("printk_info.dev_info") + vi.size("dev_printk_info"))
        info_size = _struct_size(vi, "printk_info", info_end, 0)
    else:  # before 5.11: no dev_info; dict_len and the level/flag bytes are not described
        info_size = _struct_size(vi, "printk_info", info_end, 16)
    descs = _read(read_virt, descs_va, count * desc_size, "the printk descriptor array")
    infos = _read(read_virt, infos_va, count * info_size, "the printk_info array")
    data = _read(read_virt, data_va, 1 << size_bits, "the printk text ring")

    state_var = _field_view(descs, count, desc_size, o_state, "<u8")
    begin = _field_view(descs, count, desc_size, lpos + o_begin, "<u8")
    nxt = _field_view(descs, count, desc_size, lpos + o_next, "<u8")
    seq = _field_view(infos, count, info_size, o_seq, "<u8")
    ts = _field_view(infos, count, info_size, o_ts, "<u8")
    text_len = _field_view(infos, count, info_size, o_tlen, "<u2")
    caller = None
    if o_caller is not None:
        caller = _field_view(infos, count, info_size, o_caller, "<u4")

    # Walk ids tail..head (the kernel's reader order); a slot is usable only if its state_var
    # still carries this id and the record is committed or finalized.
    ids = (np.uint64(tail_id) + np.arange(n, dtype=np.uint64)) & np.uint64(_ID_MASK)
    idx = (ids & np.uint64(count - 1)).astype(np.int64)
    sv = state_var[idx]
    state = sv >> np.uint64(_SV_SHIFT)
    ok = ((sv & np.uint64(_ID_MASK)) == ids) & (
        (state == _DESC_COMMITTED) | (state == _DESC_FINALIZED)
    )

    _check_seq_order(seq[idx[ok]], ids[ok])
    records: list[Record] = []
    skipped = 0
    for i in idx[ok].tolist():
        text = _block_text(data, size_bits, int(begin[i]), int(nxt[i]), int(text_len[i]))
        if text is None:
            skipped += 1
            continue
        records.append(
            Record(int(seq[i]), int(ts[i]), text, None if caller is None else int(caller[i]))
        )
    # The kernel hands out seq numbers in id order; sorting only guards odd-but-valid rings.
    records.sort(key=lambda r: r.seq)
    return Log(records, skipped, "lockless")


def clear_seq(read_virt: ReadVirt, vmcoreinfo: Mapping[str, str]) -> int:
    """The first seq not cleared by ``dmesg -C`` (``syslog(SYSLOG_ACTION_CLEAR)``)."""
    vi = VmcoreInfo(vmcoreinfo)
    if not vi.has("SYMBOL(clear_seq)"):
        raise DumpError(
            "VMCOREINFO has no SYMBOL(clear_seq): cannot tell where the log was cleared"
        )
    va = vi.symbol("clear_seq")
    if vi.has("SIZE(latched_seq)"):  # the latch's sequence (offset 0) picks the live copy
        latch = _u(_read(read_virt, va, 4, "clear_seq"), 0, 4)
        va += vi.offset("latched_seq.val") + 8 * (latch & 1)
    return _u(_read(read_virt, va, 8, "clear_seq"), 0, 8)


def _block_text(data: bytes, size_bits: int, begin: int, nxt: int, text_len: int) -> bytes | None:
    """The text of one data block (prb get_data() rules), or None if the block is unusable.

    A block normally lies at ``begin % size`` and spans ``next - begin`` bytes; a block that
    would cross the end of the ring is stored at offset 0 instead and then ends at
    ``next % size``.  The first 8 bytes are the block's id.
    """
    if begin & 1 and nxt & 1:  # data-less: empty text, or text that failed to be stored
        return b"" if begin == _NO_LPOS and nxt == _NO_LPOS else None
    size = 1 << size_bits
    if begin >> size_bits == nxt >> size_bits and begin < nxt:
        off, length = begin & (size - 1), nxt - begin
    elif (begin + size) >> size_bits == nxt >> size_bits:
        off, length = 0, nxt & (size - 1)
    else:
        return None
    if begin % 8 or nxt % 8 or length < 8 or off + length > size:
        return None
    return data[off + 8 : off + 8 + min(text_len, length - 8)]


def read_legacy(
    read_virt: ReadVirt, vmcoreinfo: Mapping[str, str], *, partial: bool = False
) -> Log:
    """Read the 3.5-5.9 structured log_buf: variable-length records from log_first_idx.

    Each record is a ``struct printk_log`` header followed by its text; ``len`` is the whole
    record length, and a header with ``len == 0`` (or no room for a header) means "wrap to 0".
    ``partial``: only the records from ``clear_idx`` on (all of them if it was overwritten).
    """
    vi = VmcoreInfo(vmcoreinfo)
    st = "printk_log" if vi.has("SIZE(printk_log)") else "log"
    buf_va = _u(_read(read_virt, vi.symbol("log_buf"), 8, "log_buf"), 0, 8)
    buf_len = _u(_read(read_virt, vi.symbol("log_buf_len"), 4, "log_buf_len"), 0, 4)
    first = _u(_read(read_virt, vi.symbol("log_first_idx"), 4, "log_first_idx"), 0, 4)
    nxt = _u(_read(read_virt, vi.symbol("log_next_idx"), 4, "log_next_idx"), 0, 4)
    clear = None
    if partial:
        if not vi.has("SYMBOL(clear_idx)"):
            raise DumpError(
                "VMCOREINFO has no SYMBOL(clear_idx): cannot tell where the log was cleared"
            )
        clear = _u(_read(read_virt, vi.symbol("clear_idx"), 4, "clear_idx"), 0, 4)
    hdr = _sane_size(vi.size(st))
    o_ts, o_len = vi.offset(f"{st}.ts_nsec"), vi.offset(f"{st}.len")
    o_tlen = vi.offset(f"{st}.text_len")
    o_caller = vi.offset(f"{st}.caller_id") if vi.has(f"OFFSET({st}.caller_id)") else None
    if not 0 < buf_len <= 1 << _MAX_SIZE_BITS or first >= buf_len or nxt >= buf_len:
        raise DumpError(f"kernel log_buf is corrupt (len={buf_len}, first={first}, next={nxt})")
    buf = _read(read_virt, buf_va, buf_len, "log_buf")

    records: list[Record] = []
    idx, wrapped, dropped = first, False, 0
    for _ in range(buf_len // hdr + 2):  # every record is at least a header long
        if idx == clear:
            dropped = len(records)
        if idx == nxt:  # first == next: empty, as the kernel's own readers see it
            return Log(records[dropped:] if clear is not None else records, 0, "legacy")
        length = _u(buf, idx + o_len, 2) if idx + hdr <= buf_len else 0
        if length == 0:
            if wrapped:
                break
            idx, wrapped = 0, True
            continue
        if length < hdr or idx + length > buf_len:
            break
        tlen = min(_u(buf, idx + o_tlen, 2), length - hdr)
        records.append(
            Record(
                len(records),
                _u(buf, idx + o_ts, 8),
                buf[idx + hdr : idx + hdr + tlen],
                None if o_caller is None else _u(buf, idx + o_caller, 4),
            )
        )
        idx += length
    raise DumpError("kernel log_buf is corrupt (record chain does not reach log_next_idx)")


def _struct_size(vi: VmcoreInfo, name: str, member_end: int, slack: int) -> int:
    """SIZE(name), which must hold its described members (ending at ``member_end``) and at
    most ``slack`` bytes of undescribed ones, after alignment to 8 bytes."""
    size = vi.size(name)
    most = -(-member_end // 8) * 8 + slack
    if not member_end <= size <= most:
        raise DumpError(
            f"VMCOREINFO SIZE({name})={size} does not fit its members ({member_end}..{most} bytes)"
        )
    return size


def _check_seq_order(seqs: np.ndarray, ids: np.ndarray) -> None:
    """Records in id order carry consecutive sequence numbers: prb_reserve() gives an id's
    record the seq of the slot's previous record plus the ring's size, so seq - id is the
    same for every record.  If most neighbours disagree, the printk_info layout VMCOREINFO
    gives is not the ring's, and the records read would be a random fraction of the log."""
    if len(seqs) < 4:
        return
    mask = np.uint64(_ID_MASK)
    step = ((seqs[1:] - seqs[:-1]) & mask) == ((ids[1:] - ids[:-1]) & mask)
    follow = int(np.count_nonzero(step))
    if 2 * follow < len(step):
        raise DumpError(
            f"printk ring buffer: only {follow} of {len(step)} records follow their "
            "predecessor's sequence number (is the printk_info layout in VMCOREINFO wrong?)"
        )


def _sane_size(size: int) -> int:
    if not 0 < size <= 4096:
        raise DumpError(f"implausible printk structure size {size} in VMCOREINFO")
    return size


def read_log(read_virt: ReadVirt, vmcoreinfo: Mapping[str, str], *, partial: bool = False) -> Log:
    """Pick the log format the VMCOREINFO describes and read it (``partial``: only since the
    last clear, which may be nothing)."""
    if "SYMBOL(prb)" in vmcoreinfo:
        log = read_lockless(read_virt, vmcoreinfo)
        if not log.records:
            raise DumpError("the kernel log holds no readable record (corrupt printk ring buffer?)")
        if partial:
            first = clear_seq(read_virt, vmcoreinfo)
            log.records = [r for r in log.records if r.seq >= first]
        return log
    if "SYMBOL(log_buf)" in vmcoreinfo:
        log = read_legacy(read_virt, vmcoreinfo, partial=partial)
        if not log.records and not partial:
            raise DumpError("the kernel log holds no readable record (corrupt printk ring buffer?)")
        return log
    raise DumpError("VMCOREINFO has neither SYMBOL(prb) nor SYMBOL(log_buf): no kernel log")


# C isspace(): tab, newline, vertical tab, form feed, carriage return are printed as they are.
_ESCAPE = {
    b: f"\\x{b:02x}".encode()
    for b in [*range(0x20), 0x7F]
    if b not in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)
}


def _escape(text: bytes) -> bytes:
    """Control bytes other than whitespace as \\xNN (makedumpfile's rule); UTF-8 kept."""
    if not any(b in _ESCAPE for b in text):
        return text
    return b"".join(_ESCAPE.get(b, bytes((b,))) for b in text)


def format_records(records: Iterable[Record], caller: bool = False) -> bytes:
    """makedumpfile's layout: ``[time] text``, continuation lines indented under the text."""
    out: list[bytes] = []
    for r in records:
        if not r.text:  # data-less records: makedumpfile prints nothing for them
            continue
        secs, nsec = divmod(r.ts_nsec, 1_000_000_000)
        prefix = f"[{secs:5d}.{nsec // 1000:06d}] "
        if caller and r.caller_id is not None:
            kind = "C" if r.caller_id & _CALLER_CPU else "T"
            prefix = prefix[:-1] + f"[{kind + str(r.caller_id & ~_CALLER_CPU & 0xFFFFFFFF):>6}] "
        indent = b"\n" + b" " * len(prefix)
        out.append(prefix.encode() + _escape(r.text).replace(b"\n", indent) + b"\n")
    return b"".join(out)


def _write_file(path: str, data: bytes, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Through outfile.SafeFile: never a partial log under the final name, never the input."""
    from .outfile import SafeFile
    from .output import _write_all

    with SafeFile(path, force=force, seek=False, inputs=inputs) as out:
        _write_all(out.fd, None, [data], path)
        out.commit()


def _vmcoreinfo_mapping(src) -> Mapping[str, str]:
    """The raw ``KEY=value`` pairs of the source's VMCOREINFO (vmcoreinfo.VmcoreInfo.raw)."""
    vi = src.vmcoreinfo
    return vi if isinstance(vi, Mapping) else vi.raw


def _virt_reader(src) -> ReadVirt:
    """Kernel-virtual reads for ``src`` through the x86_64 page-table walk."""
    from . import x86_64

    return x86_64.virt_reader(src)


def dump_dmesg(
    src,
    path: str | None,
    force: bool = False,
    caller: bool = False,
    partial: bool = False,
    inputs: tuple[str, ...] = (),
) -> int:
    """Write the crashed kernel's log to ``path`` (stdout if None); returns the record count."""
    log = read_log(_virt_reader(src), _vmcoreinfo_mapping(src), partial=partial)
    text = format_records(log.records, caller=caller)
    if log.skipped:
        print(f"dumpfilter: {log.skipped} log record(s) without readable text", file=sys.stderr)
    if path is None:
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    else:
        _write_file(path, text, force, inputs)
    return len(log.records)
