"""Read a filtered dump back with Debian's python3-libkdumpfile and compare with the raw vmcore.

Run with /usr/bin/python3 (where Debian installs the ``kdumpfile`` module; no numpy there):

    readback_kdumpfile.py DUMP RAW_VMCORE RUNS_JSON
    readback_kdumpfile.py --digest DUMP KEPT_JSON

RUNS_JSON: {"kept": [[pfn, count], ...], "excluded": [[pfn, count], ...]}, runs that lie inside
one PT_LOAD of RAW_VMCORE.  Every kept page must read back byte-identical to the raw page; the
first and last page of every excluded run (and every 64th page inside it) must be absent
(libkdumpfile's NoDataException: not in the 2nd bitmap).  Prints one JSON object.

With --digest, KEPT_JSON is [[pfn, count], ...]: every page of those runs is read, in order,
into one SHA-256 (for comparing two writers' dumps of the same crash page for page without
the raw vmcore); prints {"pages": N, "sha256": HEX}; a page that cannot be read is an error.
"""

import hashlib
import json
import struct
import sys

import kdumpfile
from kdumpfile.exceptions import NoDataException

PAGE = 4096


def loads(path):
    with open(path, "rb") as f:
        eh = f.read(64)
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        t, _fl, off, _va, pa, filesz, _m, _a = struct.unpack_from("<IIQQQQQQ", ph, i * phentsize)
        if t == 1 and filesz:
            out.append((pa, pa + filesz, off))
    return out


def read_raw(f, segs, pa, size):
    """Bytes [pa, pa+size) of the raw vmcore; bytes outside every PT_LOAD (a partial page at a
    segment edge) read as zeros, as dump writers store them."""
    out = bytearray(size)
    for lo, hi, off in segs:
        a, b = max(lo, pa), min(hi, pa + size)
        if a < b:
            f.seek(off + a - lo)
            out[a - pa : b - pa] = f.read(b - a)
    return bytes(out)


def digest(dump, kept_json):
    k = kdumpfile.kdumpfile(dump)
    h = hashlib.sha256()
    pages = 0
    for pfn, count in json.load(open(kept_json)):
        for at in range(pfn, pfn + count, 256):
            n = min(256, pfn + count - at)
            try:
                h.update(bytes(k.read(kdumpfile.KDUMP_MACHPHYSADDR, at * PAGE, n * PAGE)))
            except NoDataException:
                sys.exit(f"{dump}: kept pages {at:#x}+{n} cannot be read")
            pages += n
    json.dump({"pages": pages, "sha256": h.hexdigest()}, sys.stdout)


def main():
    if sys.argv[1] == "--digest":
        return digest(*sys.argv[2:4])
    dump, raw, runs_json = sys.argv[1:4]
    runs = json.load(open(runs_json))
    segs = loads(raw)
    k = kdumpfile.kdumpfile(dump)
    res = {
        "format": k.attr["file.format"],
        "kept_pages": 0,
        "bad_kept": [],
        "excluded_checked": 0,
        "excluded_present": [],
    }
    with open(raw, "rb") as f:
        for pfn, count in runs["kept"]:
            pa = pfn * PAGE
            want = read_raw(f, segs, pa, count * PAGE)
            try:
                got = bytes(k.read(kdumpfile.KDUMP_MACHPHYSADDR, pa, count * PAGE))
            except NoDataException:
                got = None
            if got != want:  # find the first differing page for the report
                for j in range(count):
                    try:
                        g = bytes(k.read(kdumpfile.KDUMP_MACHPHYSADDR, pa + j * PAGE, PAGE))
                    except NoDataException:
                        g = None
                    if g != want[j * PAGE : (j + 1) * PAGE]:
                        res["bad_kept"].append([pfn + j, "absent" if g is None else "differs"])
                        break
            res["kept_pages"] += count
    for pfn, count in runs["excluded"]:
        probe = sorted({pfn, pfn + count - 1, *range(pfn, pfn + count, 64)})
        for p in probe:
            res["excluded_checked"] += 1
            try:
                k.read(kdumpfile.KDUMP_MACHPHYSADDR, p * PAGE, PAGE)
                res["excluded_present"].append(p)
            except NoDataException:
                pass
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
