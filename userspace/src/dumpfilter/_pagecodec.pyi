# The C extension's interface (_pagecodec.c; its docstrings say what each returns).
from typing import Any

Buffer = Any  # bytes-like: bytes, bytearray, memoryview, a C-contiguous numpy array

def compress_pages(
    codec: str, pages: Buffer, rows: Buffer, page_size: int, scratch: bytearray, /
) -> tuple[bytes, bytes]: ...
def encode_runs(
    codec: str,
    fd: int,
    mapped: bool,
    offsets: Buffer,
    sizes: Buffer,
    page_size: int,
    find_zero: bool,
    pagebuf: bytearray,
    outbuf: bytearray,
    /,
) -> tuple[bytes, bytes, int, int]: ...
