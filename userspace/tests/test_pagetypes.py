"""Encoding detection: chosen from which VMCOREINFO keys exist, never from OSRELEASE."""

import pytest
import synthvmcore as sv
from fakes import (
    enc_for,
)

from dumpfilter.errors import DumpError
from dumpfilter.pagetypes import detect
from dumpfilter.vmcoreinfo import VmcoreInfo

EXPECT = {
    "6.1": ("4.16-6.2", "page1_u8", "dtor", 17),
    "6.3": ("6.3-6.5", "page1_u8", "dtor", 17),
    "6.6": ("6.6-6.8", "flags1", "flags1_bit", None),
    "6.9": ("6.9", "flags1", "head_type", None),
    "6.10": ("6.10-6.11", "flags1", "head_type", None),
    "6.12": ("6.12+", "flags1", "head_type", None),
    "6.16": ("6.12+", "flags1", "head_type", None),
    "7.1": ("6.12+", "flags1", "head_type", None),
    "7.2": ("6.12+", "flags1", "head_type", None),
}


@pytest.mark.parametrize("kernel", sv.KERNELS)
def test_each_kernel_family_maps_to_its_encoding(kernel):
    enc, fam = enc_for(kernel)
    name, order_kind, huge, order_off = EXPECT[kernel]
    assert enc.name.startswith(name)
    assert (enc.order_kind, enc.hugetlb_kind, enc.order_off) == (order_kind, huge, order_off)
    assert enc.buddy == fam.buddy and enc.top_byte == (fam.buddy >> 24 == 0xF0)
    assert (enc.slab_type is None) == (fam.slab_type is None)
    assert (enc.pg_slab is None) != (enc.slab_type is None)
    assert enc.off_compound_head == 8
    assert (enc.unaccepted is not None) == fam.unaccepted


def test_detection_ignores_osrelease():
    enc, _ = enc_for("6.12")
    text = sv.vmcoreinfo_text("6.12").replace(
        "OSRELEASE=6.12.43+deb13-amd64", "OSRELEASE=6.1.0-56-amd64"
    )
    assert detect(VmcoreInfo.parse(text)).name == enc.name


def _text(kernel, drop=(), replace=()):
    lines = sv.vmcoreinfo_text(kernel).splitlines()
    lines = [ln for ln in lines if not any(ln.startswith(d) for d in drop)]
    for a, b in replace:
        lines = [ln.replace(a, b) for ln in lines]
    return VmcoreInfo.parse("\n".join(lines))


def test_no_buddy_value_is_an_error():
    with pytest.raises(DumpError, match="PAGE_BUDDY_MAPCOUNT_VALUE"):
        detect(_text("6.1", drop=["NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"]))


def test_unknown_type_values_are_an_error():
    with pytest.raises(DumpError, match="unknown page-type encoding"):
        detect(_text("6.1", replace=[("=-129", "=-4097")]))


def test_no_slab_information_is_an_error():
    with pytest.raises(DumpError, match="unknown page-type encoding"):
        detect(_text("6.12", drop=["NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)"]))


def test_compound_info_rename_is_accepted_and_one_of_them_required():
    assert detect(_text("7.1")).off_compound_head == 8
    with pytest.raises(DumpError, match="compound_head"):
        detect(_text("7.1", drop=["OFFSET(page.compound_info)"]))


def test_6_6_without_hugetlb_page_still_reads_order_from_flags():
    enc = detect(_text("6.6", drop=["NUMBER(PG_hugetlb)"]))
    assert enc.order_kind == "flags1" and enc.hugetlb_kind == "none"


@pytest.mark.parametrize("kernel", sv.KERNELS)
def test_pg_reserved_is_exported_number_else_the_bit_before_pg_private(kernel):
    """enum pageflags: ``PG_arch_1, PG_reserved, PG_private`` (6.1, 6.12, mainline)."""
    enc, fam = enc_for(kernel)
    assert enc.pg_reserved == fam.pg["reserved"] == fam.pg["private"] - 1
    text = sv.vmcoreinfo_text(kernel) + "NUMBER(PG_reserved)=40\n"
    assert detect(VmcoreInfo.parse(text)).pg_reserved == 40


# -- values our kernel patch exports (kernel-patches/README.md): preferred when present


def test_exported_page_type_shift_selects_the_top_byte_and_other_shifts_are_refused():
    enc, _ = enc_for("6.12", patched=True)
    assert enc.top_byte and enc.type_base is None
    with pytest.raises(DumpError, match="PAGE_TYPE_SHIFT"):
        enc_for("6.12", patched=True, page_type_shift=16)


def test_exported_page_type_shift_with_a_non_top_byte_buddy_value_is_refused():
    text = sv.vmcoreinfo_text("6.1", patched=True).replace(
        "NUMBER(PAGE_TYPE_BASE)", "NUMBER(PAGE_TYPE_SHIFT)=24\nNUMBER(X)"
    )
    with pytest.raises(DumpError, match="PAGE_TYPE_SHIFT=24"):
        detect(VmcoreInfo.parse(text))


def test_exported_page_type_base_selects_the_kernels_mask_test():
    assert enc_for("6.1", patched=True)[0].type_base == 0xF0000000
    assert enc_for("6.1")[0].type_base is None
    text = sv.vmcoreinfo_text("6.1", patched=True)
    with pytest.raises(DumpError, match="do not fit together"):
        detect(VmcoreInfo.parse(text.replace("PAGE_TYPE_BASE)=4026531840", "PAGE_TYPE_BASE)=128")))


def test_exported_mapping_anon_bit_is_used_and_the_fallback_is_bit_0():
    assert enc_for("6.1", patched=True, anon_bit=1)[0].anon_bit == 1
    assert enc_for("6.12", patched=True)[0].anon_bit == 0
    assert enc_for("6.12")[0].anon_bit == 0
    with pytest.raises(DumpError, match="PAGE_MAPPING_ANON"):
        enc_for("6.1", patched=True, anon_bit=3)


def test_72_patch_exports_the_anon_bit_under_the_folio_name():
    assert "NUMBER(FOLIO_MAPPING_ANON)=2" in sv.vmcoreinfo_text("7.2", patched=True, anon_bit=1)
    assert enc_for("7.2", patched=True, anon_bit=1)[0].anon_bit == 1
    assert enc_for("7.2")[0].anon_bit == 0
    with pytest.raises(DumpError, match="FOLIO_MAPPING_ANON"):
        enc_for("7.2", patched=True, anon_bit=3)


@pytest.mark.parametrize("key", ["flags", "mapping", "private", "_mapcount", "compound_head"])
@pytest.mark.parametrize("value", ["-24", "64", "4096"])
def test_struct_page_offsets_outside_the_struct_are_named(key, value):
    text = sv.vmcoreinfo_text("6.1")
    old = next(ln for ln in text.split("\n") if ln.startswith(f"OFFSET(page.{key})="))
    vi = VmcoreInfo.parse(text.replace(old, f"OFFSET(page.{key})={value}"))
    with pytest.raises(DumpError, match=rf"OFFSET\(page\.{key}\)"):
        detect(vi)


@pytest.mark.parametrize("orders", ["0", "17", "64"])
def test_page_order_counts_beyond_a_section_are_refused(orders):
    text = sv.vmcoreinfo_text("6.1").replace(
        "LENGTH(zone.free_area)=11", f"LENGTH(zone.free_area)={orders}"
    )
    with pytest.raises(DumpError, match=f"LENGTH\\(zone.free_area\\)={orders}"):
        detect(VmcoreInfo.parse(text))
