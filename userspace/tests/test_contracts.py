"""The contracts of contracts.py hold for every implementation: nothing is probed for."""

from __future__ import annotations

from fakes import FakeStats

from dumpfilter import contracts, write
from dumpfilter.diskdump_in import KdumpInput
from dumpfilter.elfcore import ElfVmcore
from dumpfilter.kernelscan import KernelClassification, ScanResult
from dumpfilter.report import Stats
from dumpfilter.scan import userspace_scan


def _members(protocol: type) -> set[str]:
    """Attributes and methods a protocol declares (not those of ``object``/``Protocol``)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if callable(v) or isinstance(v, property)}
    return {n for n in names if not n.startswith("_")}


def _missing(obj: object, protocol: type) -> list[str]:
    return sorted(n for n in _members(protocol) if not hasattr(obj, n))


def test_both_input_readers_offer_every_source_member(synth61, tmp_path):
    kdump = tmp_path / "d.kdump"
    with ElfVmcore(synth61.path) as src:
        assert _missing(src, contracts.Source) == []
        c = userspace_scan(src, 31)
        write.write_dump(src, c, contracts.WriteOptions(dumpfile=str(kdump)), FakeStats())
    with KdumpInput(str(kdump)) as src:
        assert _missing(src, contracts.Source) == []
        assert src.loads == () and src.ehdr is None


def test_both_scans_offer_every_classification_member(synth61):
    import numpy as np

    with ElfVmcore(synth61.path) as src:
        assert _missing(userspace_scan(src, 31), contracts.Classification) == []
        empty = ScanResult.from_runs(
            np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint32)
        )
        kc = KernelClassification(src.max_pfn, src.ram_ranges, empty)
        assert _missing(kc, contracts.Classification) == []


def test_the_protocols_declare_the_members_that_were_probed_for_before():
    assert {"windows", "nodata", "prepare_seconds", "describe"} <= _members(
        contracts.Classification
    )
    assert {"loads", "ehdr", "incomplete", "span_array", "limit_windows"} <= _members(
        contracts.Source
    )


def test_the_report_takes_the_page_size_from_the_source_of_a_kernel_scan(synth61):
    """A kernel-scan classification carries no source: the report asks the input itself."""
    import numpy as np

    with ElfVmcore(synth61.path) as src:
        empty = ScanResult.from_runs(
            np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint32)
        )
        kc = KernelClassification(src.max_pfn, src.ram_ranges, empty)

        class Big:
            page_size = 2 * src.page_size
            loads = src.loads
            ram_ranges = src.ram_ranges

        assert Stats.from_classification(kc, 31, src).page_size == src.page_size
        assert Stats.from_classification(kc, 31, Big()).page_size == 2 * src.page_size
