"""Flattened stream: record format, and -R reassembly of any record order; a cut or corrupt
stream is one clear error and leaves no file."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys

import dumpdamage
import pytest

from dumpfilter import flat
from dumpfilter.errors import DumpError
from dumpfilter.kdumpformat import DUMP_DH_COMPRESSED_INCOMPLETE, Header
from dumpfilter.output import FlatSink

CMD = [sys.executable, "-m", "dumpfilter.cli"]


def _stream(records: list[tuple[int, bytes]], end: bool = True) -> bytes:
    head = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)
    out = head.ljust(4096, b"\0")
    for off, data in records:
        out += struct.pack(">qq", off, len(data)) + data
    if end:
        out += struct.pack(">qq", -1, -1)
    return out


def test_flat_sink_writes_header_records_and_end_marker(tmp_path):
    p = tmp_path / "s"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT)
    sink = FlatSink(fd)
    sink.write_at(8192, [b"abc", b"de"])
    sink.write_at(0, [b"xy"])
    sink.finish()
    os.close(fd)
    assert p.read_bytes() == _stream([(8192, b"abcde"), (0, b"xy")])


def test_records_in_any_order_rebuild_the_file_with_zero_gaps(tmp_path):
    out = tmp_path / "out"
    recs = [(10_000, b"tail"), (0, b"head"), (20_000, b"x" * 3_000_000)]
    n = flat.reassemble(io.BytesIO(_stream(recs)), str(out))
    data = out.read_bytes()
    assert n == len(data) == 20_000 + 3_000_000
    assert data[:4] == b"head" and data[4:5000] == bytes(4996)
    assert data[10_000:10_004] == b"tail" and data[10_004:20_000] == bytes(9996)
    assert data[20_000:] == b"x" * 3_000_000


@pytest.mark.parametrize(
    "stream,msg",
    [
        (b"not a dump" * 500, "not a flattened"),
        (_stream([(0, b"abc")], end=False), "end marker"),
        (_stream([(0, b"abcdef")])[:-20], "ends inside a record"),
        (_stream([(-5, b"abc")]), "bad record"),
        (_stream([])[:100], "ends inside its header"),
    ],
)
def test_bad_or_cut_streams_fail_clearly_and_leave_nothing(tmp_path, stream, msg):
    out = tmp_path / "out"
    with pytest.raises(DumpError, match=msg):
        flat.reassemble(io.BytesIO(stream), str(out))
    assert os.listdir(tmp_path) == []


def test_reassembly_refuses_an_existing_file_without_force(tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"keep")
    with pytest.raises(DumpError, match="already exists"):
        flat.reassemble(io.BytesIO(_stream([(0, b"new")])), str(out))
    assert out.read_bytes() == b"keep"
    flat.reassemble(io.BytesIO(_stream([(0, b"new")])), str(out), force=True)
    assert out.read_bytes() == b"new"


# --- an end marker that comes early ------------------------------------------------------------


@pytest.fixture(scope="module", params=[["-c"], ["-E"]], ids=["kdump", "elf"])
def stream(request, synth_factory, tmp_path_factory):
    s = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])
    path = tmp_path_factory.mktemp("flat") / "stream"
    with open(path, "wb") as f:
        r = subprocess.run(
            [*CMD, "-F", *request.param, "-d", "31", s.path], stdout=f, stderr=subprocess.PIPE
        )
    assert r.returncode == 0, r.stderr
    return path.read_bytes()


def _rebuild(data: bytes, out) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, "-R", str(out)], input=data, capture_output=True)


def _marked(path) -> bool:
    head = open(path, "rb").read(4096)
    if head[:4] == b"\x7fELF":
        return bool(struct.unpack_from("<I", head, 48)[0] & 1)
    return bool(Header.unpack(head).status & DUMP_DH_COMPRESSED_INCOMPLETE)


def test_a_whole_stream_rebuilds_unmarked(stream, tmp_path):
    r = _rebuild(stream, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert not _marked(tmp_path / "out")


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_an_early_end_marker_leaves_a_dump_marked_incomplete_and_fails(stream, tmp_path, where):
    recs = dumpdamage.flat_records(stream)
    pos = recs[max(1, int(len(recs) * where))][0]
    r = _rebuild(stream[:pos] + dumpdamage.END_MARKER, tmp_path / "out")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert b"marked incomplete" in r.stderr
    assert _marked(tmp_path / "out")


def test_a_stream_cut_without_end_marker_leaves_nothing(stream, tmp_path):
    r = _rebuild(stream[: len(stream) // 2], tmp_path / "out")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert os.listdir(tmp_path) == []


def test_an_end_marker_before_the_layout_is_whole_leaves_nothing(stream, tmp_path):
    recs = dumpdamage.flat_records(stream)
    for cut in (4096, recs[1][0]):  # no record at all; the first record (the header) only
        r = _rebuild(stream[:cut] + dumpdamage.END_MARKER, tmp_path / "out")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert os.listdir(tmp_path) == []
