"""A printk ring buffer (5.10+) laid out byte by byte in fake kernel memory, for the tests
of ``dmesg.py``.

The writer follows the kernel's allocation rules (kernel/printk/printk_ringbuffer.c):
descriptor ids count up and wrap at 2**62, data blocks ``{id, text}`` are 8-byte aligned and a
block that would cross the end of the text ring is placed at offset 0; overwritten records
become ``desc_reusable`` while the tail id lags behind.  Struct layouts are those of x86_64
Linux 6.1 (the VMCOREINFO values are what a 6.1 kernel exports).
"""

from __future__ import annotations

import struct

from dumpfilter.errors import DumpError

ID_MASK = (1 << 62) - 1


RESERVED, COMMITTED, FINALIZED, REUSABLE = 0, 1, 2, 3


FAILED_LPOS, NO_LPOS = 0x1, 0x3


PRB_VA = 0xFFFFFFFF82A00000  # the `prb` pointer variable


RB_VA = 0xFFFFFFFF82A01000  # struct printk_ringbuffer


DESCS_VA = 0xFFFF888004000000


INFOS_VA = 0xFFFF888004100000


DATA_VA = 0xFFFF888004200000


VMCOREINFO_61 = {
    "SYMBOL(prb)": f"{PRB_VA:x}",
    "SYMBOL(printk_rb_static)": "ffffffff82a02000",
    "SYMBOL(clear_seq)": "ffffffff82a03000",
    "SIZE(printk_ringbuffer)": "88",
    "OFFSET(printk_ringbuffer.desc_ring)": "0",
    "OFFSET(printk_ringbuffer.text_data_ring)": "48",
    "OFFSET(printk_ringbuffer.fail)": "80",
    "SIZE(prb_desc_ring)": "48",
    "OFFSET(prb_desc_ring.count_bits)": "0",
    "OFFSET(prb_desc_ring.descs)": "8",
    "OFFSET(prb_desc_ring.infos)": "16",
    "OFFSET(prb_desc_ring.head_id)": "24",
    "OFFSET(prb_desc_ring.tail_id)": "32",
    "SIZE(prb_desc)": "24",
    "OFFSET(prb_desc.state_var)": "0",
    "OFFSET(prb_desc.text_blk_lpos)": "8",
    "SIZE(prb_data_blk_lpos)": "16",
    "OFFSET(prb_data_blk_lpos.begin)": "0",
    "OFFSET(prb_data_blk_lpos.next)": "8",
    "SIZE(printk_info)": "88",
    "OFFSET(printk_info.seq)": "0",
    "OFFSET(printk_info.ts_nsec)": "8",
    "OFFSET(printk_info.text_len)": "16",
    "OFFSET(printk_info.caller_id)": "20",
    "OFFSET(printk_info.dev_info)": "24",
    "SIZE(dev_printk_info)": "64",
    "OFFSET(dev_printk_info.subsystem)": "0",
    "LENGTH(printk_info_subsystem)": "16",
    "OFFSET(dev_printk_info.device)": "16",
    "LENGTH(printk_info_device)": "48",
    "SIZE(prb_data_ring)": "32",
    "OFFSET(prb_data_ring.size_bits)": "0",
    "OFFSET(prb_data_ring.data)": "8",
    "OFFSET(prb_data_ring.head_lpos)": "16",
    "OFFSET(prb_data_ring.tail_lpos)": "24",
    "SIZE(atomic_long_t)": "8",
    "OFFSET(atomic_long_t.counter)": "0",
    "SIZE(latched_seq)": "24",
    "OFFSET(latched_seq.val)": "8",
}


class Memory:
    """Kernel virtual memory as a few regions; reads outside them fail like a page-table hole."""

    def __init__(self):
        self.regions: dict[int, bytearray] = {}

    def put(self, va: int, data: bytes | bytearray) -> None:
        self.regions[va] = bytearray(data)

    def read(self, va: int, size: int) -> bytes:
        for base, buf in self.regions.items():
            if base <= va and va + size <= base + len(buf):
                return bytes(buf[va - base : va - base + size])
        raise DumpError(f"virtual address {va:#x} is not mapped")


class Ring:
    """A printk_ringbuffer writer with the kernel's id, lpos and wrap rules."""

    def __init__(self, count_bits: int = 4, size_bits: int = 9):
        self.count_bits, self.size_bits = count_bits, size_bits
        self.count, self.size = 1 << count_bits, 1 << size_bits
        self.descs = bytearray(self.count * 24)
        self.infos = bytearray(self.count * 88)
        self.data = bytearray(self.size)
        # DESC0_ID: the first id is chosen so that ids wrap early (-(count + 1), masked).
        self.head_id = self.tail_id = (-(self.count + 1)) & ID_MASK
        self._set_desc(self.head_id, REUSABLE, FAILED_LPOS, FAILED_LPOS)
        self.head_lpos = -(self.size * 5) & ((1 << 64) - 1)  # lpos also start near a wrap
        self.head_lpos &= ~(self.size - 1)
        self.seq = 0
        self.live: list[tuple[int, int, int]] = []  # (id, begin, next) of records with data

    def _set_desc(self, did: int, state: int, begin: int, nxt: int) -> None:
        struct.pack_into(
            "<QQQ", self.descs, (did % self.count) * 24, (state << 62) | did, begin, nxt
        )

    def set_state(self, did: int, state: int) -> None:
        off = (did % self.count) * 24
        sv = struct.unpack_from("<Q", self.descs, off)[0]
        struct.pack_into("<Q", self.descs, off, (state << 62) | (sv & ID_MASK))

    def _push_desc_tail(self, new_id: int) -> None:
        # The slot of new_id holds id - count: it must be reusable and the tail moves past it.
        old = (new_id - self.count) & ID_MASK
        self.live = [r for r in self.live if r[0] != old]
        if self.tail_id == old:
            self.tail_id = (old + 1) & ID_MASK

    def _push_data_tail(self, nxt: int) -> None:
        # Records whose block starts before next - size are overwritten: reusable.
        while self.live and (nxt - self.live[0][1]) & ((1 << 64) - 1) > self.size:
            self.set_state(self.live[0][0], REUSABLE)
            self.live.pop(0)

    def add(
        self,
        text: bytes,
        ts_nsec: int,
        caller: int = 1,
        state: int = FINALIZED,
        failed: bool = False,
    ) -> int:
        did = (self.head_id + 1) & ID_MASK
        self._push_desc_tail(did)
        if failed or not text:
            begin = nxt = FAILED_LPOS if failed else NO_LPOS
        else:
            blk = (8 + len(text) + 7) & ~7
            begin = self.head_lpos
            if begin >> self.size_bits == (begin + blk) >> self.size_bits:
                nxt, off = begin + blk, begin % self.size
            else:  # would cross the end: the block goes to offset 0 of the next wrap
                nxt, off = ((begin + blk) & ~(self.size - 1)) + blk, 0
            nxt &= (1 << 64) - 1
            self._push_data_tail(nxt)
            struct.pack_into("<Q", self.data, off, did)
            self.data[off + 8 : off + 8 + len(text)] = text
            self.head_lpos = nxt
            self.live.append((did, begin, nxt))
        self._set_desc(did, state, begin, nxt)
        struct.pack_into(
            "<QQHxxI", self.infos, (did % self.count) * 88, self.seq, ts_nsec, len(text), caller
        )
        self.head_id = did
        self.seq += 1
        return did

    def memory(self, vmcoreinfo=None) -> Memory:
        mem = Memory()
        mem.put(PRB_VA, struct.pack("<Q", RB_VA))
        rb = bytearray(88)
        struct.pack_into(
            "<IxxxxQQQQ", rb, 0, self.count_bits, DESCS_VA, INFOS_VA, self.head_id, self.tail_id
        )
        struct.pack_into("<IxxxxQQQ", rb, 48, self.size_bits, DATA_VA, self.head_lpos, 0)
        mem.put(RB_VA, rb)
        mem.put(DESCS_VA, self.descs)
        mem.put(INFOS_VA, self.infos)
        mem.put(DATA_VA, self.data)
        return mem
