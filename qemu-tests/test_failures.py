"""A cycle that does not produce a dump is reported as the failure it is, never as a pass."""

from __future__ import annotations

import pytest

import kdumpvm


def test_crash_without_a_loaded_capture_kernel_is_reported():
    with pytest.raises(kdumpvm.CycleError) as e:
        kdumpvm.run_kdump_cycle(
            kdumpvm.stock_kernel("6.1"),
            fault="no-kexec",
            workload=None,
            use_cache=False,
            tag="fault",
        )
    assert e.value.step == "kexec load"
    assert "no capture kernel loaded" in str(e.value)
    assert e.value.console and e.value.console.exists()


def test_capture_kernel_that_never_comes_up_is_reported():
    # No init in the capture kernel: it panics ("No working init found" / cannot mount root),
    # and panic=-1 with -no-reboot ends QEMU before any capture marker.
    with pytest.raises(kdumpvm.CycleError) as e:
        kdumpvm.run_kdump_cycle(
            kdumpvm.stock_kernel("6.1"),
            capture_append="rdinit=/nonexistent",
            workload=None,
            use_cache=False,
            tag="fault",
        )
    assert e.value.step == "capture boot", str(e.value)
    assert "never came up" in str(e.value)
