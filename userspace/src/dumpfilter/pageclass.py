"""Page classes: why a page frame is kept or excluded.

One small integer per PFN flows from classification (userspace or kernel scan) to the
writers and the report.  The numbering is part of the kernel ABI too: the in-kernel scan
(``/proc/vmcore_pfn_lists``) reports runs with the same class numbers.

Compare class arrays with ``int(PageClass.X)`` or an ``np.uint8``, not the member itself:
numpy treats an IntEnum operand as an int64 array and compares much more slowly.
"""

from enum import IntEnum


class PageClass(IntEnum):
    """Per-PFN verdict.  KEEP is 0 so that a zeroed array means "keep everything"."""

    KEEP = 0
    CACHE = 1  # page cache without private data (dump level bit 2; dumplevel.py)
    CACHE_PRIVATE = 2  # page cache with private data (bit 4)
    USER = 3  # anonymous and hugetlbfs pages (bit 8)
    FREE = 4  # buddy free pages, unaccepted memory (bit 16)
    HWPOISON = 5  # always excluded
    OFFLINE = 6  # logically offline pages, always excluded
    HOLE = 7  # not RAM: outside every PT_LOAD
    ZERO = 8  # all-zero contents (bit 1); decided from the data, by the writer
