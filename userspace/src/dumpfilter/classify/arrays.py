"""Small numpy helpers for the scan's hot loops, where numpy's Python-level wrappers cost
more than the work on the short arrays involved."""

from __future__ import annotations

import numpy as np


def any_(mask: np.ndarray) -> bool:
    """``mask.any()`` minus numpy's Python-level reduction wrapper: a scan makes hundreds
    of such tests on short arrays, where the wrapper costs more than the test."""
    return bool(np.count_nonzero(mask))


def all_(mask: np.ndarray) -> bool:
    """``mask.all()``, the same way as ``any_``."""
    return np.count_nonzero(mask) == mask.size


def ones(n: int) -> np.ndarray:
    """``np.ones(n, np.int64)`` in two C calls (np.ones itself is Python-level)."""
    a = np.empty(n, np.int64)
    a.fill(1)
    return a


def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    """The pieces as one array, without a copy when there is only one."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)
