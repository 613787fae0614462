"""VMCOREINFO text -> typed values.

The note body is one ``KEY=VALUE`` per line (docs/page-types.md §1): ``SYMBOL()`` and
``KERNELOFFSET`` are hex without ``0x``, ``SIZE/OFFSET/LENGTH`` unsigned decimal, ``NUMBER()``
a *signed* long (``NUMBER(VMALLOC_START)`` is hex with ``0x``).  Page-type values are compared
with the u32 ``_mapcount`` word, so ``number_u32`` masks them (6.10's enum may even print
unsigned; masking handles both).
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import DumpError

X86_64_PAGE_SIZE = 4096
_SIZE_LIMIT = 1 << 32


def _show(text: str) -> str:
    """A value for an error line: quoted, control characters escaped, long ones cut."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


class VmcoreInfo:
    """Parsed VMCOREINFO; ``raw`` is the key -> text mapping, in note order."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw: dict[str, str] = dict(raw)

    @classmethod
    def parse(cls, data: bytes | str) -> VmcoreInfo:
        text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
        raw: dict[str, str] = {}
        for line in text.split("\n"):
            line = line.strip("\0\r ")
            if not line or "=" not in line:
                continue
            key, _, value = line.partition("=")
            raw.setdefault(key, value)
        return cls(raw)

    def has(self, key: str) -> bool:
        return key in self.raw

    def _get(self, key: str) -> str:
        try:
            return self.raw[key]
        except KeyError:
            raise DumpError(f"VMCOREINFO has no {key}") from None

    def _int(self, key: str, base: int, lo: int = -(1 << 63), hi: int = 1 << 64) -> int:
        """The value of ``key``, which must lie in ``[lo, hi)`` (what the kernel's C type
        can print), else a DumpError naming the key."""
        text = self._get(key).strip()
        try:
            if base == 0 or text.lower().startswith(("0x", "-0x")):
                value = int(text, 0 if text.lower().lstrip("-").startswith("0x") else 10)
            else:
                value = int(text, base)
        except ValueError:
            raise DumpError(f"VMCOREINFO {key}={_show(text)} is not a number") from None
        if not lo <= value < hi:
            raise DumpError(f"VMCOREINFO {key}={_show(text)} is out of range")
        return value

    # ---------------------------------------------------------------- typed accessors
    def symbol(self, name: str) -> int:
        return self._int(f"SYMBOL({name})", 16, 0)

    # SIZE/OFFSET/LENGTH are unsigned (``%lu`` of sizeof/offsetof/ARRAY_SIZE): negative text
    # is corruption, and no kernel structure or array the readers use is near 4 GiB.
    def size(self, name: str) -> int:
        return self._int(f"SIZE({name})", 10, 0, _SIZE_LIMIT)

    def offset(self, name: str) -> int:
        return self._int(f"OFFSET({name})", 10, 0, _SIZE_LIMIT)

    def length(self, name: str) -> int:
        return self._int(f"LENGTH({name})", 10, 0, _SIZE_LIMIT)

    def number(self, name: str) -> int:
        """NUMBER(name) as the signed long the kernel printed (hex if it has ``0x``)."""
        return self._int(f"NUMBER({name})", 10)

    def number_u32(self, name: str) -> int:
        return self.number(name) & 0xFFFFFFFF

    def opt(self, kind: str, name: str) -> int | None:
        """``opt("NUMBER", "PG_slab")``: the value, or None when the key is absent."""
        key = f"{kind}({name})"
        if key not in self.raw:
            return None
        return {
            "SYMBOL": self.symbol,
            "SIZE": self.size,
            "OFFSET": self.offset,
            "LENGTH": self.length,
            "NUMBER": self.number,
        }[kind](name)

    # ---------------------------------------------------------------- plain keys
    @property
    def osrelease(self) -> str:
        return self.raw.get("OSRELEASE", "")

    @property
    def page_size(self) -> int:
        ps = self._int("PAGESIZE", 10)
        if ps <= 0 or ps & (ps - 1):
            raise DumpError(f"VMCOREINFO PAGESIZE={ps} is not a power of two")
        if ps != X86_64_PAGE_SIZE:  # every reader here is x86_64's (4 KiB base pages)
            raise DumpError(f"VMCOREINFO PAGESIZE={ps}: x86_64 pages are {X86_64_PAGE_SIZE} bytes")
        return ps

    @property
    def kernel_offset(self) -> int:
        return self._int("KERNELOFFSET", 16) if "KERNELOFFSET" in self.raw else 0

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def __repr__(self) -> str:
        return f"VmcoreInfo({self.osrelease!r}, {len(self.raw)} keys)"
