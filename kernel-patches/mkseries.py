#!/usr/bin/env python3
"""Regenerate kernel-patches/v6.1/, v6.12/ and v7.2/ from the canonical sources.

The new files of the series (the /proc/vmcore_pfn_lists source, its UAPI header and its
documentation) live once, in kernel-patches/src/, which the out-of-tree module also builds
from.  The edits to existing kernel files are described here, per tree, as anchored
insertions: an anchor that is missing or not unique stops the script, so a tree the series
does not fit is caught here rather than by `git am`.

    mkseries.py [--check] [--tree 6.1|6.12|7.2] [--src-root DIR]

The pristine Debian files are read from the debian-base tag of the tree debian-tree.sh keeps
in the cache (the newest linux-source-<ver>, fetched, never installed; build-kernel.sh builds
in the same tree).  Only the files the series touches are copied into a scratch git
repository, so this runs in seconds; `git am` works
on the full tree because the blobs are identical.  --check regenerates into a temporary
directory and fails if the committed patches differ.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
AUTHOR = "dumpfilter developers <dumpfilter@example.org>"
DATE = "Thu, 26 Nov 2026 06:00:00 +0000"
NEW_FILES = [
    "fs/proc/vmcore_pfn_lists.c",
    "include/uapi/linux/vmcore_pfn_lists.h",
    "Documentation/admin-guide/kdump/vmcore_pfn_lists.rst",
]
TREES = {"6.1": "6.1.192", "6.12": "6.12.118", "7.2": "7.2.13"}


def pristine_tree(tree: str) -> Path:
    """The Debian source tree of *tree*, whose debian-base tag holds the pristine files."""
    p = subprocess.run(
        [str(HERE / "debian-tree.sh"), tree], stdout=subprocess.PIPE, text=True, check=False
    )
    if p.returncode:
        sys.exit(f"mkseries: no Debian linux-source-{tree} (debian-tree.sh failed)")
    return Path(p.stdout.strip().splitlines()[-1])


def pristine_file(root: Path, rel: str, from_git: bool) -> bytes:
    if from_git:
        return subprocess.run(
            ["git", "-C", str(root), "show", f"debian-base:{rel}"],
            stdout=subprocess.PIPE, check=True,
        ).stdout  # fmt: skip
    return (root / rel).read_bytes()


class Edit:
    """Anchored text insertions into one file of a scratch tree."""

    def __init__(self, root: Path, rel: str):
        self.path = root / rel
        self.rel = rel
        self.text = self.path.read_text()

    def _find(self, anchor: str) -> int:
        n = self.text.count(anchor)
        if n != 1:
            sys.exit(f"mkseries: {self.rel}: anchor found {n} times: {anchor!r}")
        return self.text.index(anchor)

    def after(self, anchor: str, new: str) -> Edit:
        i = self._find(anchor) + len(anchor)
        self.text = self.text[:i] + new + self.text[i:]
        return self

    def before(self, anchor: str, new: str) -> Edit:
        i = self._find(anchor)
        self.text = self.text[:i] + new + self.text[i:]
        return self

    def replace(self, old: str, new: str) -> Edit:
        i = self._find(old)
        self.text = self.text[:i] + new + self.text[i + len(old) :]
        return self

    def save(self) -> None:
        self.path.write_text(self.text)


def git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="dumpfilter developers",
        GIT_AUTHOR_EMAIL="dumpfilter@example.org",
        GIT_COMMITTER_NAME="dumpfilter developers",
        GIT_COMMITTER_EMAIL="dumpfilter@example.org",
        GIT_AUTHOR_DATE=DATE,
        GIT_COMMITTER_DATE=DATE,
    )
    r = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, env=env, capture_output=True, text=True
    )
    return r.stdout


# ---------------------------------------------------------------------------------------
# Patch 1: VMCOREINFO exports

DOC_COMMON = """\
PG_reserved
-----------

The page flag of page frames the kernel set aside at boot and never gave
to the page allocator, such as its own image. Their flags and mapping can
look like those of page cache or user pages (data in the image is not
bound by the page allocator's rules), so dump filters keep the
PG_reserved pages of the kernel image whatever else they exclude.

PAGE_MAPPING_ANON
-----------------

The bit set in page->mapping of an anonymous page (the rest of the word
points to its anon_vma). Dump filters use it to recognise user data
without assuming its value.

SECTION_MAP_LAST_BIT
--------------------

The number of flag bits at the bottom of mem_section.section_mem_map.
The mem_map address of a section is the value with these bits cleared;
the number of flags grows over time, so it is exported rather than
assumed.

"""

DOC_61 = """\
PAGE_TYPE_BASE|PAGE_MAPCOUNT_RESERVE
------------------------------------

The page type encoding of page->page_type, which shares its word with
page->_mapcount. A page has the type PG_x when ``(page_type &
(PAGE_TYPE_BASE | PG_x)) == PAGE_TYPE_BASE``; a page_type below
PAGE_MAPCOUNT_RESERVE (as a signed int) holds a type, not a map count.
PAGE_OFFLINE_MAPCOUNT_VALUE is exported whether or not CONFIG_HUGETLB_PAGE
is set, so that logically offline pages can always be excluded.

vmemmap
-------

With CONFIG_SPARSEMEM_VMEMMAP, the virtual address of the struct page of
page frame 0: the struct page of page frame N is at vmemmap + N. It is
randomised by CONFIG_RANDOMIZE_MEMORY.

VMALLOC_START
-------------

The start of the vmalloc area, needed to translate vmalloc addresses. It
is randomised by CONFIG_RANDOMIZE_MEMORY.

"""

DOC_SHIFT = """\
PAGE_TYPE_SHIFT
---------------

The page type is stored as a value in the top byte of page->page_type,
which shares its word with page->_mapcount: a page has the type whose
PAGE_*_MAPCOUNT_VALUE is v when ``page_type >> PAGE_TYPE_SHIFT == v >>
PAGE_TYPE_SHIFT``. The lower bits may be used by the owner of the type.

"""

# Mainline exports it since 2025 (7.2's vmcore_info.c has it): only 6.12 needs it.
DOC_UNACCEPTED = """\
PAGE_UNACCEPTED_MAPCOUNT_VALUE
------------------------------

The page type of the first page of a block of memory a confidential
computing guest (TDX, SEV-SNP) has not accepted yet. Such a block spans
the largest buddy order; the memory is not in use and must not be read,
so dump filters exclude it like free pages.

"""

MSG_EXPORTS = {
    "6.1": """\
crash_core: export the page values dump filters still assume

A dump filter reading /proc/vmcore decides which page frames to drop
from the struct pages of the crashed kernel.  A few of the values it
needs are not in VMCOREINFO, so filters hard-code them, and the dumps
go wrong silently when the kernel changes them.  Export them:

  NUMBER(PG_reserved)                  the flag of the kernel's own
                                       reserved pages, which a filter
                                       must keep
  NUMBER(PAGE_MAPPING_ANON)            the anonymous-mapping bit of
                                       page->mapping
  NUMBER(SECTION_MAP_LAST_BIT)         the flag bits of
                                       mem_section.section_mem_map

Each value is documented in vmcoreinfo.rst.

This continues the v3.9 change "kexec: add the values related to buddy
system for filtering free pages", which exported the buddy values for
the same purpose.
""",
    "6.12": """\
vmcore_info: export the page values dump filters still assume

A dump filter reading /proc/vmcore decides which page frames to drop
from the struct pages of the crashed kernel.  A few of the values it
needs are not in VMCOREINFO, so filters hard-code them, and the dumps
go wrong silently when the kernel changes them.  Export them:

  NUMBER(PG_reserved)                  the flag of the kernel's own
                                       reserved pages, which a filter
                                       must keep
  NUMBER(PAGE_MAPPING_ANON)            the anonymous-mapping bit of
                                       page->mapping
  NUMBER(SECTION_MAP_LAST_BIT)         the flag bits of
                                       mem_section.section_mem_map
  NUMBER(PAGE_TYPE_SHIFT)              where the type sits in
                                       page->page_type
  NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)
                                       memory a confidential guest has
                                       not accepted, which a filter
                                       must not read

The PAGE_*_MAPCOUNT_VALUE definitions use PAGE_TYPE_SHIFT instead of a
literal 24.  Each value is documented in vmcoreinfo.rst.

This continues the v3.9 change "kexec: add the values related to buddy
system for filtering free pages", which exported the buddy values for
the same purpose.
""",
}
# After 6.12 the anonymous-mapping bit became FOLIO_MAPPING_ANON, and mainline exports
# PAGE_UNACCEPTED_MAPCOUNT_VALUE itself: 7.2's patch exports the rest under 7.2's names.
MSG_EXPORTS["7.2"] = (
    MSG_EXPORTS["6.12"]
    .replace("  NUMBER(PAGE_MAPPING_ANON)            ", "  NUMBER(FOLIO_MAPPING_ANON)           ")
    .replace(
        "  NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)\n"
        "                                       memory a confidential guest has\n"
        "                                       not accepted, which a filter\n"
        "                                       must not read\n",
        "",
    )
)
assert "FOLIO_MAPPING_ANON" in MSG_EXPORTS["7.2"]
assert "UNACCEPTED" not in MSG_EXPORTS["7.2"]
# The anonymous-mapping bit's name per tree.
ANON = {"6.1": "PAGE_MAPPING_ANON", "6.12": "PAGE_MAPPING_ANON", "7.2": "FOLIO_MAPPING_ANON"}
# Page types whose PAGE_*_MAPCOUNT_VALUE the tree defines with a literal 24.
PAGE_TYPES = {"6.12": ("slab", "buddy", "hugetlb", "offline")}
PAGE_TYPES["7.2"] = PAGE_TYPES["6.12"] + ("unaccepted",)

MSG_SHIFT = """\
mm: name the shift of the type in page->page_type

The page type is the top byte of page->page_type; the literal 24 that
says so is repeated in the type helpers, and code outside mm that
decodes page types (VMCOREINFO for dump filters) has to repeat it once
more.  Give it a name.

No functional change.
"""

MSG_BACKPORT_61 = """\
crash_core: export the values later kernels export for dump filters

Dump filters read these values from the VMCOREINFO of later kernels or
assume them for 6.1.  Export them here too, under the names and in the
formats later kernels use, so that a filter reads 6.1 dumps the same
way:

  SYMBOL(vmemmap)                      the struct page array base
                                       (CONFIG_SPARSEMEM_VMEMMAP;
                                       exported since v6.9)
  NUMBER(VMALLOC_START)                the vmalloc area base (exported
                                       since v6.9)
  NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)  now also without
                                       CONFIG_HUGETLB_PAGE, so that
                                       logically offline pages can be
                                       excluded on every configuration
  NUMBER(PAGE_TYPE_BASE)               the page type encoding of
  NUMBER(PAGE_MAPCOUNT_RESERVE)        page->page_type in 6.1

This is a distribution backport, not for mainline, which exports the
first two and encodes page types differently.  Each value is
documented in vmcoreinfo.rst.
"""


def exports(root: Path, tree: str) -> list[str]:
    """The values mainline could take: the same in every tree."""
    core = CORE[tree]
    e = Edit(root, core)
    e.after(
        "\tVMCOREINFO_NUMBER(MAX_PHYSMEM_BITS);\n",
        "\tVMCOREINFO_NUMBER(SECTION_MAP_LAST_BIT);\n",
    )
    e.after("\tVMCOREINFO_NUMBER(PG_head_mask);\n", f"\tVMCOREINFO_NUMBER({ANON[tree]});\n")
    e.after("\tVMCOREINFO_NUMBER(PG_private);\n", "\tVMCOREINFO_NUMBER(PG_reserved);\n")
    doc = DOC_COMMON
    if tree == "7.2":
        doc = doc.replace(
            "PAGE_MAPPING_ANON\n-----------------\n", "FOLIO_MAPPING_ANON\n------------------\n"
        )
    if tree in PAGE_TYPES:
        e.after("\tVMCOREINFO_NUMBER(PG_swapbacked);\n", "\tVMCOREINFO_NUMBER(PAGE_TYPE_SHIFT);\n")
        for t in PAGE_TYPES[tree]:
            e.replace(f"(PGTY_{t} << 24)", f"(PGTY_{t} << PAGE_TYPE_SHIFT)")
        doc += DOC_SHIFT
    if tree == "6.12":
        e.after(
            "\tVMCOREINFO_NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE);\n",
            "#define PAGE_UNACCEPTED_MAPCOUNT_VALUE\t(PGTY_unaccepted << PAGE_TYPE_SHIFT)\n"
            "\tVMCOREINFO_NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE);\n",
        )
        doc += DOC_UNACCEPTED
    e.save()
    d = Edit(root, "Documentation/admin-guide/kdump/vmcoreinfo.rst")
    d.before("x86_64\n======\n", doc)
    d.save()
    return [core, "Documentation/admin-guide/kdump/vmcoreinfo.rst"]


def page_type_shift(root: Path, tree: str) -> list[str]:
    """6.12 and 7.2: the page type helpers name their shift (mm, before the export uses it)."""
    rel = "include/linux/page-flags.h"
    e = Edit(root, rel)
    e.replace(
        " * The low 24 bits of pagetype may be used for your own purposes, as long\n"
        " * as you are careful to not affect the top 8 bits.  The low bits of\n"
        " * pagetype will be overwritten when you clear the page_type from the page.\n"
        " */\n",
        " * The low PAGE_TYPE_SHIFT bits of pagetype may be used for your own\n"
        " * purposes, as long as you are careful to not affect the type in the top\n"
        " * bits.  The low bits of pagetype will be overwritten when you clear the\n"
        " * page_type from the page.\n"
        " */\n"
        "#define PAGE_TYPE_SHIFT\t24\n\n",
    )
    e.replace(
        "\treturn page_type < (PGTY_mapcount_underflow << 24);\n",
        "\treturn page_type < (PGTY_mapcount_underflow << PAGE_TYPE_SHIFT);\n",
    )
    for old, new in (
        ("\treturn data_race(folio->page.page_type >> 24) == PGTY_##lname;\t\\\n",
         "\t/* Racy on purpose: the type may be set or cleared meanwhile */\t\\\n"
         "\treturn data_race(folio->page.page_type >> PAGE_TYPE_SHIFT) == PGTY_##lname; \\\n"),
        ("\tfolio->page.page_type = (unsigned int)PGTY_##lname << 24;\t\\\n",
         "\tfolio->page.page_type =\t\t\t\t\t\t\\\n"
         "\t\t(unsigned int)PGTY_##lname << PAGE_TYPE_SHIFT;\t\t\\\n"),
        ("\treturn data_race(page->page_type >> 24) == PGTY_##lname;\t\\\n",
         "\t/* Racy on purpose: the type may be set or cleared meanwhile */\t\\\n"
         "\treturn data_race(page->page_type >> PAGE_TYPE_SHIFT) == PGTY_##lname;\t\\\n"),
        ("\tpage->page_type = (unsigned int)PGTY_##lname << 24;\t\t\\\n",
         "\tpage->page_type = (unsigned int)PGTY_##lname << PAGE_TYPE_SHIFT;\t\\\n"),
    ):  # fmt: skip
        e.replace(old, new)
    e.save()
    return [rel]


def backport_61(root: Path, tree: str) -> list[str]:
    """6.1 only: what later kernels export, in their names and formats."""
    core = CORE[tree]
    e = Edit(root, core)
    e.after(
        "\tVMCOREINFO_SYMBOL(vmap_area_list);\n",
        '\tvmcoreinfo_append_str("NUMBER(VMALLOC_START)=0x%lx\\n",\n'
        "\t\t\t      (unsigned long)VMALLOC_START);\n",
    )
    e.after(
        "\tVMCOREINFO_SYMBOL(contig_page_data);\n#endif\n",
        "#ifdef CONFIG_SPARSEMEM_VMEMMAP\n\tVMCOREINFO_SYMBOL_ARRAY(vmemmap);\n#endif\n",
    )
    e.replace(
        "\tVMCOREINFO_NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE);\n"
        "#ifdef CONFIG_HUGETLB_PAGE\n"
        "\tVMCOREINFO_NUMBER(HUGETLB_PAGE_DTOR);\n"
        "#define PAGE_OFFLINE_MAPCOUNT_VALUE\t(~PG_offline)\n"
        "\tVMCOREINFO_NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE);\n"
        "#endif\n",
        "\tVMCOREINFO_NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE);\n"
        "#define PAGE_OFFLINE_MAPCOUNT_VALUE\t(~PG_offline)\n"
        "\tVMCOREINFO_NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE);\n"
        "\tVMCOREINFO_NUMBER(PAGE_TYPE_BASE);\n"
        "\tVMCOREINFO_NUMBER(PAGE_MAPCOUNT_RESERVE);\n"
        "#ifdef CONFIG_HUGETLB_PAGE\n"
        "\tVMCOREINFO_NUMBER(HUGETLB_PAGE_DTOR);\n"
        "#endif\n",
    )
    e.save()
    d = Edit(root, "Documentation/admin-guide/kdump/vmcoreinfo.rst")
    d.before("x86_64\n======\n", DOC_61)
    d.save()
    return [core, "Documentation/admin-guide/kdump/vmcoreinfo.rst"]


CORE = {
    "6.1": "kernel/crash_core.c",
    "6.12": "kernel/vmcore_info.c",
    "7.2": "kernel/vmcore_info.c",
}


# ---------------------------------------------------------------------------------------
# Patch 2: /proc/vmcore_pfn_lists

KCONFIG = """
config PROC_VMCORE_PFN_LISTS
\ttristate "/proc/vmcore_pfn_lists: page classification for dump filters"
\tdepends on PROC_VMCORE && {core} && X86_64
\thelp
\t  In a kdump capture kernel, let a dump filter such as makedumpfile
\t  ask this kernel to classify the crashed kernel's pages (free,
\t  page cache, user data, hwpoison, offline) with its own page flag
\t  helpers, instead of re-implementing them from VMCOREINFO values.
\t  The file refuses to work unless the crashed kernel is this same
\t  kernel, and adds nothing to the crashing kernel.

\t  See <file:Documentation/admin-guide/kdump/vmcore_pfn_lists.rst>.

\t  If unsure, say N.
"""

MSG2 = """\
proc/vmcore: add /proc/vmcore_pfn_lists for in-kernel page classification

A dump filter drops free pages, page cache and user data from a kdump
by decoding the crashed kernel's struct pages in userspace, with copies
of PageBuddy(), PageSlab(), the compound and hugetlb rules and the page
type encoding rebuilt from VMCOREINFO values.  Those copies break
whenever mm changes them: 6.3, 6.6, 6.9, 6.10 and 6.12 each needed a
makedumpfile update, and a stale filter silently keeps every page.

Add /proc/vmcore_pfn_lists to the capture kernel.  The filter passes the
crashed kernel's mem_map chunk table (page frame range and physical
address of the struct pages), a mask of the page classes it asks about
(free, cache, cache with private data, user, hwpoison, offline) and a
buffer; VMCORE_PFN_IOC_SCAN returns (pfn, count, class) runs of those
classes and per-class counts, with a resume cursor kept by the caller,
so the kernel holds no per-scan state.  Which classes a dump level
leaves out stays the filter's decision.  VMCORE_PFN_IOC_INFO says
whether scans are possible (the kernel log says why not) and gives the
limits.  Both structures start with their size and are read with
copy_struct_from_user(), so they can grow without a version number.

fs/proc/vmcore.c gains two accessors for it: vmcore_oldmem_layout()
(the old-memory ranges /proc/vmcore reads and its ELF notes) and
vmcore_has_callbacks() (whether a driver such as virtio-mem must be
asked which page frames may be read).

This revisits the 2012 /proc/vmcore_pfn_lists proposal and answers the
objections that stopped it:

 - Version skew: the capture kernel classifies with its own helpers
   only when the crashed kernel's VMCOREINFO shows the same build id,
   release, struct page layout and page flag and type values as its
   own; otherwise every scan fails with -EXDEV and the filter uses its
   own scan.
 - Panic path: nothing runs in the crashing kernel; everything happens
   in the capture kernel, on request.
 - Memory: the old-memory ranges, one mapping of part of one mem_map
   chunk at a time (at most 16 MiB), one page of copied struct pages
   and about 7 KiB per call; the chunk table and the runs are in the
   caller's memory.
 - I/O: each chunk is mapped once; the speed of the I/O path is not
   what this is about, mmap() of /proc/vmcore already fixed that.
 - Safety: every value used comes from one copy of the request that
   was checked before any page is read; a chunk must lie inside the
   memory /proc/vmcore reads and outside the capture kernel's RAM;
   struct pages are classified in a copy, never in place; no pointer
   stored in an old struct page is followed and no reference is taken;
   one call examines the struct pages of at most 4 GiB of memory and
   stops for signals.  Memory encryption and vmcore callbacks, which
   /proc/vmcore honours and this scan cannot, make it refuse with
   -EOPNOTSUPP.

The file exists only in a kdump kernel on x86_64, is root only and is
built with CONFIG_PROC_VMCORE_PFN_LISTS (tristate).
"""


OOT = "VMCORE_PFN_LISTS_OOT"


def strip_oot(text: str) -> str:
    """The in-tree form of a source file: ``#ifdef VMCORE_PFN_LISTS_OOT`` blocks dropped,
    ``#ifndef`` blocks kept without their guards (the ``#else`` branches likewise).

    The out-of-tree module is compiled with -DVMCORE_PFN_LISTS_OOT from the same file; only
    these two forms of conditional on that symbol are understood, nested ones are not.
    """
    out: list[str] = []
    depth = 0  # nesting of #if inside the OOT conditional
    keep: bool | None = None  # None: outside an OOT conditional
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if keep is None:
            if s in (f"#ifdef {OOT}", f"#ifndef {OOT}"):
                keep = s.startswith("#ifndef")
                depth = 0
                continue
            if OOT in s:
                sys.exit(f"mkseries: unsupported use of {OOT}: {s!r}")
            out.append(line)
            continue
        if s.startswith("#if"):
            depth += 1
        elif s.startswith("#endif"):
            if not depth:
                keep = None
                continue
            depth -= 1
        elif s.startswith("#else") and not depth:
            keep = not keep
            continue
        if OOT in s:
            sys.exit(f"mkseries: nested use of {OOT}: {s!r}")
        if keep:
            out.append(line)
    if keep is not None:
        sys.exit(f"mkseries: unterminated #ifdef {OOT}")
    return "".join(out)


VMCORE_ACCESSORS = """
/**
 * vmcore_oldmem_layout - the crashed kernel's memory as /proc/vmcore reads it
 * @fn: called with @arg for each range of old memory: physical start, size
 * @arg: passed to @fn
 * @notes: set to the ELF notes /proc/vmcore presents, device dumps excepted
 * @notes_size: set to the size of @notes
 *
 * For /proc/vmcore_pfn_lists, which reads the crashed kernel's struct pages
 * and must read nothing /proc/vmcore would not.  The ranges and notes are
 * built by vmcore_init() from the ELF core header and do not change later.
 *
 * Return: 0, -ENODATA when /proc/vmcore is not set up, or the first
 * non-zero value @fn returned.
 */
int vmcore_oldmem_layout(int (*fn)(void *arg, u64 paddr, u64 size), void *arg,
\t\t\t const void **notes, size_t *notes_size)
{
\tstruct vmcore *m;
\tint ret;

\tif (!proc_vmcore)
\t\treturn -ENODATA;
\tlist_for_each_entry(m, &vmcore_list, list) {
\t\tret = fn(arg, m->paddr, m->size);
\t\tif (ret)
\t\t\treturn ret;
\t}
\t*notes = elfnotes_buf;
\t*notes_size = elfnotes_orig_sz;
\treturn 0;
}
EXPORT_SYMBOL_GPL(vmcore_oldmem_layout);

/**
 * vmcore_has_callbacks - whether a driver registered a vmcore callback
 *
 * Return: true when reading old memory has to ask a driver which page
 * frames are RAM, as /proc/vmcore does.
 */
bool vmcore_has_callbacks(void)
{
\tbool ret;
\tint idx;

\tidx = srcu_read_lock(&vmcore_cb_srcu);
\tret = !list_empty(&vmcore_cb_list);
\tsrcu_read_unlock(&vmcore_cb_srcu, idx);
\treturn ret;
}
EXPORT_SYMBOL_GPL(vmcore_has_callbacks);
"""

# Since 6.14 (David Hildenbrand's virtio-mem kdump series) struct vmcore is struct
# vmcore_range, and a vmcore callback may add device RAM ranges to vmcore_list after
# vmcore_init(), under vmcore_mutex.
VMCORE_ACCESSORS_72 = (
    VMCORE_ACCESSORS.replace(
        " * and must read nothing /proc/vmcore would not.  The ranges and notes are\n"
        " * built by vmcore_init() from the ELF core header and do not change later.\n",
        " * and must read nothing /proc/vmcore would not: the ranges vmcore_init()\n"
        " * built from the ELF core header and the device RAM ranges a vmcore\n"
        " * callback added.\n",
    )
    .replace("\tstruct vmcore *m;\n", "\tstruct vmcore_range *m;\n")
    .replace(
        "\tif (!proc_vmcore)\n\t\treturn -ENODATA;\n",
        "\tif (!proc_vmcore)\n\t\treturn -ENODATA;\n\tguard(mutex)(&vmcore_mutex);\n",
    )
)
assert VMCORE_ACCESSORS_72.count("vmcore_range") == 1
assert VMCORE_ACCESSORS_72.count("guard(mutex)") == 1
assert VMCORE_ACCESSORS_72.count("device RAM ranges") == 1

CRASH_DUMP_DECLS = """int vmcore_oldmem_layout(int (*fn)(void *arg, u64 paddr, u64 size), void *arg,
\t\t\t const void **notes, size_t *notes_size);
bool vmcore_has_callbacks(void);
"""


COVER_TEXT = """\
kdump: let the capture kernel classify the crashed kernel's pages

Dump filters such as makedumpfile drop free pages, page cache and user
data from a kdump by decoding the crashed kernel's struct pages in
userspace, with copies of PageBuddy(), PageSlab(), the compound and
hugetlb rules and the page type encoding rebuilt from VMCOREINFO values.
Those copies break whenever mm changes them (6.3, 6.6, 6.9, 6.10 and
6.12 each needed a makedumpfile update), and a stale filter silently
keeps every page or drops the wrong ones.

This series lets the capture kernel do the classification with its own
helpers, when - and only when - it is the kernel that crashed:

{parts}{last} adds /proc/vmcore_pfn_lists: the filter passes the crashed
     kernel's mem_map chunk table, the page classes it asks about and
     a buffer; the kernel returns (pfn, count, class) runs, or refuses
     with -EXDEV when the crashed kernel's VMCOREINFO shows another
     build, struct page layout or page flag values.  Two accessors in
     fs/proc/vmcore.c give it the old memory and notes /proc/vmcore
     itself uses.

Design
------
- All state of a scan is in the caller's request (a resume cursor), so
  the kernel keeps nothing per file or per scan.
- Each call copies the part of the chunk table it may scan once, checks
  all of it (inside the memory /proc/vmcore reads, outside the capture
  kernel's RAM, sorted, bounded) before any page is read, and uses only
  that copy.
- A call examines the struct pages of at most 4 GiB of memory in at
  most 256 chunks, reschedules after every batch and stops for pending
  signals.
- Struct pages are copied into kernel memory before the page-flag
  helpers look at them; no pointer stored in an old struct page is
  followed and no reference is taken.
- Memory encryption and registered vmcore callbacks, which /proc/vmcore
  honours through paths this scan does not have, make it refuse with
  -EOPNOTSUPP.  x86_64 only until another architecture is tested.

Answers to the objections to the 2012 proposal
----------------------------------------------
Cliff Wickman's 2012 /proc/vmcore_pfn_lists and Jingbai Ma's 2013
panic-time bitmap were not merged.  The objections, and this design:

- Source of the speedup: most of the 2012 gain was avoiding one
  ioremap() per 4 KiB read() of /proc/vmcore, which mmap() fixed in
  v3.11.  This series does not claim that; it maps each chunk once, as
  an mmap()-based filter does.  Correctness across kernel versions comes
  first; the classification speed is measured against a userspace scan
  that already uses mmap().
- Version skew: the scan runs only when the crashed kernel's VMCOREINFO
  shows the identical build, layout and values; otherwise -EXDEV with
  the differing key, and the filter falls back to its own scan.
- Work at panic: none.  Nothing runs in the crashing kernel; everything
  happens in the capture kernel, on request.
- Capture kernel memory: the merged old-memory ranges per boot; per
  call one mapping of at most 16 MiB of struct pages, one page of
  copies and about 7 KiB.  Nothing grows with the size of the dump.
- Maintenance: the rules live next to the helpers and change with them;
  userspace keeps its scan as the fallback, and VMCOREINFO exports stay
  needed for it and for crash and drgn; a forgotten export shows up as
  a refusal, not as a wrong dump.

Numbers
-------
1 GiB QEMU guests (TCG on a loaded 2-core host, 262112 page frames):
the scan ioctl classified every page in 9.3 to 9.8 ms (this series as
a module on Debian's 6.1 and 6.12) and 11.9 to 13.2 ms (patched
tinyconfig kernels) against 25 to 35 ms for a vectorised userspace
classifier reading the same struct pages through mmap(), with the same
result at every dump level.  Finding the chunk table costs the same
for both and dominates end to end (0.8x to 1.1x on such a small
guest).  One call over 4096 chunks naming the same struct pages
returned in 5 to 55 ms; a scan's signal handler ran 9 to 345 ms after
the signal.  Numbers from terabyte machines are still needed.

Tested
------
- The kernel scan equals the userspace scan of the same dump, page frame
  by page frame, for dump levels 1 to 31, on patched kernels and on
  distribution kernels with the same source built as a module.
- Hostile requests (ranges outside old memory or in the capture
  kernel's RAM, overlapping, wrapping, misaligned, oversized, chunks
  aliasing the same struct pages) fail with the documented errno or
  return bounded, correct answers; the kernel log stays clean.  While
  another process rewrites the chunk table with addresses outside old
  memory and in the capture kernel's RAM, calls fail with -ERANGE or
  return the unraced answer, and a kprobe on memremap() sees no mapping
  outside the crashed kernel's memory.
- A first opener whose /proc/vmcore is another file, and a 32-bit
  caller, get the same answers as everyone else.
- A crashed kernel that differs from the capture kernel is refused.
- checkpatch.pl --strict, W=1 and sparse clean on the new and touched
  files; each patch builds on its own.

Where it goes
-------------
To: kexec@lists.infradead.org
Cc: Baoquan He <bhe@redhat.com>, Vivek Goyal <vgoyal@redhat.com>,
    Dave Young <dyoung@redhat.com>,
    Andrew Morton <akpm@linux-foundation.org>,
    linux-fsdevel@vger.kernel.org, linux-mm@kvack.org,
    linux-doc@vger.kernel.org, linux-kernel@vger.kernel.org

Based on Debian's linux-source-{tree} ({version}).
"""

COVER_PARTS = {
    "6.1": " 1/3 exports the VMCOREINFO values a filter still has to assume\n"
    "     (PG_reserved, PAGE_MAPPING_ANON, SECTION_MAP_LAST_BIT); mainline\n"
    "     could take it as it is.\n"
    " 2/3 backports what later kernels export (vmemmap, VMALLOC_START) and\n"
    "     6.1's page type encoding; for distributions, not for mainline.\n",
    "6.12": " 1/3 names the shift of the page type (PAGE_TYPE_SHIFT) in mm.\n"
    " 2/3 exports the VMCOREINFO values a filter still has to assume\n"
    "     (PG_reserved, PAGE_MAPPING_ANON, SECTION_MAP_LAST_BIT,\n"
    "     PAGE_TYPE_SHIFT, PAGE_UNACCEPTED_MAPCOUNT_VALUE).\n",
    "7.2": " 1/3 names the shift of the page type (PAGE_TYPE_SHIFT) in mm.\n"
    " 2/3 exports the VMCOREINFO values a filter still has to assume\n"
    "     (PG_reserved, FOLIO_MAPPING_ANON, SECTION_MAP_LAST_BIT,\n"
    "     PAGE_TYPE_SHIFT).\n",
}


def cover_text(tree: str) -> str:
    n = len(SERIES[tree])
    return COVER_TEXT.format(
        parts=COVER_PARTS[tree], last=f" {n}/{n}", tree=tree, version=TREES[tree]
    )


# Per tree, exact replacements in the in-tree form of the new files where the tree's API
# differs from what src/ uses (src/ builds as a module on every tree): each must match once.
TREE_API = {
    # 7.x's typed allocators; checkpatch asks for them in new code.
    "7.2": {
        "fs/proc/vmcore_pfn_lists.c": [
            ("\ts = kzalloc(sizeof(*s), GFP_KERNEL);\n", "\ts = kzalloc_obj(*s);\n"),
        ],
    },
}


def patch2(root: Path, tree: str) -> list[str]:
    for rel in NEW_FILES:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = strip_oot((SRC / rel).read_text())
        for old, new in TREE_API.get(tree, {}).get(rel, []):
            if text.count(old) != 1:
                sys.exit(f"mkseries: {rel}: {old!r} found {text.count(old)} times ({tree})")
            text = text.replace(old, new)
        dst.write_text(text)
    v = Edit(root, "fs/proc/vmcore.c")
    accessors = VMCORE_ACCESSORS_72 if tree == "7.2" else VMCORE_ACCESSORS
    v.before("\n/* Init function for vmcore module. */\n", accessors)
    v.save()
    h = Edit(root, "include/linux/crash_dump.h")
    h.after("extern void unregister_vmcore_cb(struct vmcore_cb *cb);\n", CRASH_DUMP_DECLS)
    h.save()
    core = "CRASH_CORE" if tree == "6.1" else "VMCORE_INFO"
    k = Edit(root, "fs/proc/Kconfig")
    k.after(
        "\t  Exports the dump image of crashed kernel in ELF format.\n", KCONFIG.format(core=core)
    )
    k.save()
    m = Edit(root, "fs/proc/Makefile")
    m.after(
        "proc-$(CONFIG_PROC_VMCORE)\t+= vmcore.o\n",
        "obj-$(CONFIG_PROC_VMCORE_PFN_LISTS) += vmcore_pfn_lists.o\n",
    )
    m.save()
    i = Edit(root, "Documentation/admin-guide/kdump/index.rst")
    i.after("    vmcoreinfo\n", "    vmcore_pfn_lists\n")
    i.save()
    n = Edit(root, "Documentation/userspace-api/ioctl/ioctl-number.rst")
    # The contact column starts where the table's third column of '=' ends.
    rule = next(ln for ln in n.text.splitlines() if ln.startswith("====  =====  ===="))
    n.before(
        "0xC0  00-0F  linux/usb/iowarrior.h\n",
        "0xB9  01-02  linux/vmcore_pfn_lists.h".ljust(rule.rindex(" ") + 1)
        + "<mailto:kexec@lists.infradead.org>\n",
    )
    n.save()
    mt = Edit(root, "MAINTAINERS")
    mt.after("F:\tfs/proc/vmcore.c\n", "F:\tfs/proc/vmcore_pfn_lists.c\n")
    mt.after("F:\tinclude/uapi/linux/vmcore.h\n", "F:\tinclude/uapi/linux/vmcore_pfn_lists.h\n")
    mt.save()
    return NEW_FILES + [
        "fs/proc/vmcore.c",
        "include/linux/crash_dump.h",
        "fs/proc/Kconfig",
        "fs/proc/Makefile",
        "Documentation/admin-guide/kdump/index.rst",
        "Documentation/userspace-api/ioctl/ioctl-number.rst",
        "MAINTAINERS",
    ]


TOUCHED = {
    "6.1": ["kernel/crash_core.c"],
    "6.12": ["kernel/vmcore_info.c", "include/linux/page-flags.h"],
    "7.2": ["kernel/vmcore_info.c", "include/linux/page-flags.h"],
}
# The series per tree: the parts mainline could take first, distribution backports after
# them, the interface last.
SERIES = {
    "6.1": [(exports, MSG_EXPORTS["6.1"]), (backport_61, MSG_BACKPORT_61), (patch2, MSG2)],
    "6.12": [(page_type_shift, MSG_SHIFT), (exports, MSG_EXPORTS["6.12"]), (patch2, MSG2)],
    "7.2": [(page_type_shift, MSG_SHIFT), (exports, MSG_EXPORTS["7.2"]), (patch2, MSG2)],
}
COMMON = [
    "Documentation/admin-guide/kdump/vmcoreinfo.rst",
    "fs/proc/vmcore.c",
    "include/linux/crash_dump.h",
    "fs/proc/Kconfig",
    "fs/proc/Makefile",
    "Documentation/admin-guide/kdump/index.rst",
    "Documentation/userspace-api/ioctl/ioctl-number.rst",
    "MAINTAINERS",
]


def generate(tree: str, out: Path, src_root: Path | None) -> list[Path]:
    """Write the series for one tree into `out`; return the patch files."""
    pristine = src_root or pristine_tree(tree)
    with tempfile.TemporaryDirectory(prefix="mkseries-") as tmp:
        repo = Path(tmp)
        git(repo, "init", "-q")
        for rel in TOUCHED[tree] + COMMON:
            dst = repo / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(pristine_file(pristine, rel, from_git=src_root is None))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Debian linux-source-{tree} ({TREES[tree]})")
        base = git(repo, "rev-parse", "HEAD").strip()
        for fn, msg in SERIES[tree]:
            files = fn(repo, tree)
            git(repo, "add", *files)
            body = msg + f"\nSigned-off-by: {AUTHOR}\n"
            (repo / ".msg").write_text(body)
            git(repo, "commit", "-q", "-F", str(repo / ".msg"))
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.patch"):
            old.unlink()
        names = git(
            repo,
            "format-patch",
            "-q",
            "--cover-letter",
            "--zero-commit",
            "--no-signature",
            "-o",
            str(out),
            f"{base}..HEAD",
        )
        cover = out / "0000-cover-letter.patch"
        subject, blurb = cover_text(tree).split("\n\n", 1)
        text = cover.read_text()
        for placeholder, real in (("*** SUBJECT HERE ***", subject), ("*** BLURB HERE ***", blurb)):
            if text.count(placeholder) != 1:
                sys.exit(f"mkseries: {placeholder!r} not found once in the cover letter")
            text = text.replace(placeholder, real.rstrip("\n"))
        cover.write_text(text)
        return [Path(p) for p in names.split()] or sorted(out.glob("*.patch"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if committed patches differ")
    ap.add_argument("--tree", choices=sorted(TREES), action="append")
    ap.add_argument("--src-root", type=Path, help="pristine tree (default: the Debian one)")
    a = ap.parse_args()
    rc = 0
    for tree in a.tree or sorted(TREES):
        dest = HERE / f"v{tree}"
        if not a.check:
            for p in generate(tree, dest, a.src_root):
                print(p.relative_to(HERE.parent))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            generate(tree, Path(tmp), a.src_root)
            new = sorted(p.name for p in Path(tmp).glob("*.patch"))
            old = sorted(p.name for p in dest.glob("*.patch"))
            _, diff, _ = filecmp.cmpfiles(tmp, dest, new, shallow=False)
            if new != old or diff:
                print(
                    f"mkseries: kernel-patches/v{tree} is stale (run kernel-patches/mkseries.py)",
                    file=sys.stderr,
                )
                rc = 1
            else:
                print(f"kernel-patches/v{tree}: up to date")
    return rc


if __name__ == "__main__":
    sys.exit(main())
