"""The package's C extension, imported when first needed.

``_pagecodec`` links four codec libraries, which a run that compresses nothing may never
load; pip builds it when it installs the package (setup.py).  A tree used without
installing has none, which is one error line.
"""

from __future__ import annotations

import functools
from types import ModuleType

from .errors import DumpError


@functools.cache
def pagecodec() -> ModuleType:
    """The ``_pagecodec`` extension (batches of pages read, zero-tested and compressed;
    its interface: _pagecodec.pyi)."""
    try:
        from . import _pagecodec
    except ImportError as e:
        raise DumpError(f"the compression extension is missing ({e}): reinstall dumpfilter") from e
    return _pagecodec
