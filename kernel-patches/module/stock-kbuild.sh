#!/bin/bash
# A build directory for out-of-tree modules of Debian's stock kernel of a series, made from
# Debian's source of that series with this machine's compiler and host tools:
#
#   kernel-patches/module/stock-kbuild.sh 7.2    prints the directory (use it as KDIR)
#
# sid's headers package cannot be used on bookworm as it is: its host tools (modpost,
# genksyms, ...) are linked against a newer glibc, and its configuration was made by gcc 16,
# so it passes options gcc 12 rejects (-fmin-function-alignment).  Instead the stock
# kernel's own config is evaluated by `make olddefconfig` for this compiler in an object
# directory of Debian's source tree of the same version (debian-tree.sh), `modules_prepare`
# builds the host tools there, and the stock kernel's Module.symvers is copied in.  The
# release string is the stock kernel's, so vermagic matches.  Only options that describe
# the toolchain may change (CC_VERSION_TEXT, GCC_VERSION, CC_HAS_*, ...); the differences
# are written to config.diff in the directory, and any other difference stops the script.
#
#   $DUMPFILTER_CACHE/kernels/kbuild/<release>-<key>/   keyed by source version, stock
#                                                       config and compiler
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "stock-kbuild.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 6.1|6.12|7.2"
ver=$1
case "$ver" in 6.1 | 6.12 | 7.2) ;; *) die "unknown version $ver (6.1, 6.12 or 7.2)" ;; esac
cache=${DUMPFILTER_CACHE:-$HOME/.cache/dumpfilter}

rel=$(python3 "$here/../qemu-tests/debkernels.py" release "$ver") ||
	die "no stock $ver kernel in the cache (qemu-tests/debkernels.py fetch $ver)"
stock=$cache/debian/stock/$rel
config=$stock/boot/config-$rel
symvers=$stock/lib/modules/$rel/build/Module.symvers
[ -f "$config" ] && [ -f "$symvers" ] || die "$stock: no config or Module.symvers"

key() {
	(cat "$1/.git/debian-version" && gcc --version | head -n1 && cat "$config" "$symvers" "$0") |
		sha256sum | cut -c1-16
}
# Ready for this stock kernel, source and compiler: no need to wait for the tree's lock,
# which build-kernel.sh holds for a whole kernel build.
tree=$cache/kernels/tree/linux-$ver
if [ -f "$tree/.git/debian-version" ] && [ -f "$cache/kernels/kbuild/$rel-$(key "$tree")/.complete" ]; then
	echo "$cache/kernels/kbuild/$rel-$(key "$tree")"
	exit 0
fi

# The source tree is shared with build-kernel.sh, which holds this lock while it uses it.
mkdir -p "$cache/kernels"
exec 9>"$cache/kernels/.build-linux-$ver.lock"
flock 9
tree=$(DEBIAN_TREE_LOCKED=1 "$here/debian-tree.sh" "$ver")
source_version=$(cat "$tree/.git/debian-version")
out=$cache/kernels/kbuild/$rel-$(key "$tree")
if [ -f "$out/.complete" ]; then
	echo "$out"
	exit 0
fi

# The debian-base files, whatever series build-kernel.sh left applied: the headers the
# module compiles against must be the stock kernel's.
git -C "$tree" am --abort >/dev/null 2>&1 || true
git -C "$tree" reset -q --hard debian-base
git -C "$tree" clean -q -fd

# Built where it stays: the object directory's Makefile names its own path.
rm -rf "$out" && mkdir -p "$out"
cp "$config" "$out/.config"
make=(make -C "$tree" O="$out" CC=gcc HOSTCC=gcc KERNELRELEASE="$rel" -j"$(nproc)")
"${make[@]}" -s olddefconfig >&2
# What olddefconfig changed for this compiler.  Allowed: the toolchain's own description;
# Rust and the drivers written in it (no bindgen here, and the C side of the kernel does
# not depend on it); module signing defaults (the tests load modules unsigned, as with the
# bookworm kernels).  Anything else would make the module disagree with its kernel.
diff <(grep '^CONFIG_' "$config" | sort) <(grep '^CONFIG_' "$out/.config" | sort) \
	>"$out/config.diff" || true
allowed='CC_VERSION_TEXT|GCC_VERSION|CC_HAS_.*|CC_OPT_.*|GCC_ASM_GOTO_OUTPUT_BROKEN|AS_VERSION'
allowed+='|LD_VERSION|PAHOLE_VERSION|RUST|RUST_.*|RUSTC_.*|BINDGEN_VERSION_TEXT'
allowed+='|AMCC_QT2025_PHY|AX88796B_RUST_PHY|DRM_PANIC_SCREEN_QR_.*'
allowed+='|BUILD_SALT|MODULE_SIG_ALL|MODULE_SIG_KEY|SYSTEM_TRUSTED_KEYS|OPENSSL_SUPPORTS_.*'
unexpected=$(sed -n 's/^[<>] CONFIG_\([A-Z0-9_]*\)=.*/\1/p' "$out/config.diff" | sort -u |
	grep -Evx "$allowed" || true)
[ -z "$unexpected" ] || die "this compiler changes more than its description in the stock" \
	"config: $(echo "$unexpected" | tr '\n' ' ')(see $out/config.diff)"
# Debian builds its modules signed with a key that is not in the package; ours stay unsigned.
"$tree/scripts/config" --file "$out/.config" -d MODULE_SIG_ALL --set-str MODULE_SIG_KEY ""
"${make[@]}" -s olddefconfig >&2
"${make[@]}" -s modules_prepare >&2
cp "$symvers" "$out/Module.symvers"
echo "$rel $source_version $(gcc --version | head -n1)" >"$out/.complete"

echo "stock-kbuild.sh: $out ready for modules of $rel" >&2
echo "$out"
