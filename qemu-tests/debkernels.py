#!/usr/bin/env python3
"""Debian's kernels for the guests, fetched into the cache and never installed on the host.

The tests boot Debian's stock kernels, build the module against their headers and patch
Debian's kernel sources.  Installing those packages would put kernels into the host's /boot,
run update-initramfs and, on a machine with GRUB, change what it boots.  Instead the .debs
are fetched with ``apt-get download`` through a private apt state (its own sources list,
package lists and archive cache under the cache directory; the host's apt state is not
touched) and unpacked with ``dpkg-deb -x``.  The same goes for kdump-tools, whose scripts the
capture kernel runs: installing it would make its maintainer scripts edit the host's GRUB
defaults and build a kdump initramfs.

    $CACHE/debian/apt/                 private sources.list, lists/, archives (bookworm,
                                       bookworm-updates, bookworm-security)
    $CACHE/debian/apt-sid/             the same for sid, kept apart so that a bookworm
                                       package's candidate is never a sid one
    $CACHE/debian/debs/                .debs while they are unpacked (deleted after)
    $CACHE/debian/stock/<release>/     boot/vmlinuz-<release>, lib/modules/<release>/ (with
                                       modules.dep from depmod) and the unpacked headers
    $CACHE/debian/stock/<series>       symlink to the newest <release> of that series
    $CACHE/debian/src/linux-source-<series>.tar.xz   Debian's patched source tarball
    $CACHE/debian/src/linux-source-<series>.version  its package version
    $CACHE/debian/pkg/<package>/<version>/   a tool package's files (``dpkg-deb -x``) and
                                       control files in DEBIAN/ (no maintainer script
                                       runs), e.g. kdump-tools
    $CACHE/debian/pkg/<package>/current      symlink to the newest fetched <version>
    $CACHE/debian/dbg/<release>/vmlinux      the kernel's debug info, the one file taken
                                       from linux-image-<release>-dbg (the rest of the
                                       ~1 GB package, module debug info, is not kept),
                                       from the dist the image came from (sid for 7.2)

Nothing is pinned: each run asks the archive for the newest image of the series, and falls
back to the newest cached one when the archive cannot be reached.  ``PACKAGES`` in each
release directory records the package versions a result came from.

    debkernels.py fetch [SERIES...]     fetch images, modules and headers (default: all of
                                        6.1, 6.12 and 7.2)
    debkernels.py source SERIES         fetch the source tarball; print its path
    debkernels.py release SERIES        print the release string of the cached newest image
    debkernels.py package NAME          fetch and unpack a tool package; print its tree
    debkernels.py dbg SERIES|RELEASE    fetch a stock kernel's vmlinux with debug info; print it
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHIVE = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Each apt state ("dist") and its suites.  sid has its own state: with both in one, sid's
# newer kdump-tools or makedumpfile would become the candidates of the bookworm tests.
DISTS = {
    "bookworm": (
        (ARCHIVE, "bookworm"),
        (ARCHIVE, "bookworm-updates"),
        (SECURITY, "bookworm-security"),
    ),
    "sid": ((ARCHIVE, "sid"),),
}
# The image package of each series, by release string: Debian's ABI name for 6.1
# (6.1.0-N-amd64), the upstream version for the bookworm build of 6.12 and for sid's 7.2.
IMAGE = {
    "6.1": re.compile(r"^linux-image-(6\.1\.0-(\d+)-amd64)-unsigned$"),
    "6.12": re.compile(r"^linux-image-(6\.12\.(\d+)\+deb12-amd64)-unsigned$"),
    "7.2": re.compile(r"^linux-image-(7\.2\.(\d+)\+deb\d+-amd64)$"),
}
DIST = {"6.1": "bookworm", "6.12": "bookworm", "7.2": "sid"}
SERIES = tuple(IMAGE)


class FetchError(Exception):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


def root() -> Path:
    return cache_dir() / "debian"


def _say(msg: str) -> None:
    print(f"debkernels: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- private apt


def _apt_dir(dist: str) -> Path:
    d = root() / ("apt" if dist == "bookworm" else f"apt-{dist}")
    (d / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    lines = [f"deb [signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in DISTS[dist]]
    src = d / "sources.list"
    if not src.exists() or src.read_text() != "".join(lines):
        src.write_text("".join(lines))
    return d


def _apt_opts(dist: str) -> list[str]:
    d = _apt_dir(dist)
    return [
        f"-o=Dir::Etc::sourcelist={d / 'sources.list'}",
        "-o=Dir::Etc::sourceparts=-",
        f"-o=Dir::State::Lists={d / 'lists'}",
        f"-o=Dir::Cache={d / 'cache'}",
        "-o=Dir::State::status=/dev/null",  # nothing "installed": candidates are the newest
        "-o=APT::Architecture=amd64",
        "-o=APT::Sandbox::User=root",  # download into our own directory as the caller
        "-qq",
    ]


_updated: set[str] = set()


def _update(dist: str = "bookworm") -> bool:
    """Refresh the private package lists once per process; False if the archive is away."""
    if dist not in _updated:
        r = subprocess.run(["apt-get", *_apt_opts(dist), "update"], capture_output=True, text=True)
        if r.returncode != 0:
            _say(f"apt-get update failed ({r.stderr.strip().splitlines()[-1:]}); using cache")
            return False
        _updated.add(dist)
    return True


def _apt_cache(dist: str, *args: str) -> str:
    r = subprocess.run(["apt-cache", *_apt_opts(dist), *args], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def _candidate(pkg: str, dist: str = "bookworm") -> str | None:
    for line in _apt_cache(dist, "policy", pkg).splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            return None if v == "(none)" else v
    return None


def _download(pkgs: list[str], dist: str = "bookworm") -> list[Path]:
    """The .deb of each package's newest version, in $CACHE/debian/debs (reused if there)."""
    debs = root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    out, want = [], []
    for p in pkgs:
        ver = _candidate(p, dist)
        if ver is None:
            raise FetchError(f"the archive has no package {p}")
        found = list(debs.glob(f"{p}_{_deb_version(ver)}_*.deb"))
        if found:
            out.append(found[0])
        else:
            want.append(f"{p}={ver}")
    if want:
        _say(f"downloading {' '.join(want)}")
        r = subprocess.run(
            ["apt-get", *_apt_opts(dist), "download", *want],
            cwd=debs,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise FetchError(f"apt-get download failed: {r.stderr.strip()}")
        for w in want:
            p, ver = w.split("=", 1)
            found = list(debs.glob(f"{p}_{_deb_version(ver)}_*.deb"))
            if not found:
                raise FetchError(f"apt-get download gave no file for {w}")
            out.append(found[0])
    return out


def _deb_version(ver: str) -> str:
    """A version as apt writes it in a .deb's file name: an epoch's colon becomes %3a."""
    return ver.replace(":", "%3a")


def _depends(pkg: str, dist: str, rel: str) -> list[str]:
    """The kernel packages *pkg* depends on (first alternatives): linux-headers-*,
    linux-kbuild-*, and the per-release parts sid splits an image into (linux-binary-<rel>
    holds vmlinuz, linux-modules-<rel> the modules, linux-base-<rel> config and System.map)."""
    names = []
    for line in _apt_cache(dist, "show", pkg).splitlines():
        if line.startswith("Depends:"):
            for alt in line.split(":", 1)[1].split(","):
                name = alt.split("|")[0].split("(")[0].strip()
                if name.startswith(("linux-headers-", "linux-kbuild-")) or (
                    name.startswith(("linux-binary-", "linux-modules-", "linux-base-"))
                    and name.endswith(rel)
                ):
                    names.append(name)
            break
    return names


# --------------------------------------------------------------------------- stock kernels


def _newest_in_archive(series: str) -> str | None:
    pat = IMAGE[series]
    best = None
    for name in _apt_cache(DIST[series], "pkgnames", "linux-image-").split():
        m = pat.match(name)
        if m and (best is None or int(m.group(2)) > best[0]):
            best = (int(m.group(2)), m.group(1))
    return best[1] if best else None


def _newest_cached(series: str) -> str | None:
    pat = IMAGE[series]
    best = None
    stock = root() / "stock"
    if stock.is_dir():
        for d in stock.iterdir():
            name = f"linux-image-{d.name}" + ("" if DIST[series] == "sid" else "-unsigned")
            m = pat.match(name)
            if m and (d / ".complete").exists() and (best is None or int(m.group(2)) > best[0]):
                best = (int(m.group(2)), m.group(1))
    return best[1] if best else None


def _relink_absolute(tree: Path, final: Path) -> None:
    """Point the packages' absolute symlinks and Makefile paths (/usr/src/...) at *final*, the
    path *tree* will be renamed to (lib/modules/<release>/build, the headers' Makefile)."""
    for link in [p for p in tree.rglob("*") if p.is_symlink()]:
        target = os.readlink(link)
        if target.startswith("/"):
            link.unlink()
            link.symlink_to(final / target.lstrip("/"))
    for mk in (tree / "usr" / "src").glob("linux-headers-*/Makefile"):
        text = mk.read_text()
        # sid's headers also name their output directory (KBUILD_OUTPUT=/usr/src/...).
        fixed = re.sub(r"(?m)^(include |KBUILD_OUTPUT=)/usr/src/", rf"\g<1>{final}/usr/src/", text)
        if fixed != text:
            mk.write_text(fixed)


def _merged_usr_layout(tree: Path, rel: str) -> None:
    """Give a merged-/usr kernel (sid: everything under usr/lib/modules/<rel>, vmlinuz
    included) the bookworm layout the harness reads: lib/modules/<rel> and
    boot/vmlinuz-<rel>.  Links, not moves: the packages' relative links (build, source)
    are relative to usr/lib/modules/<rel>."""
    moddir = tree / "usr" / "lib" / "modules" / rel
    if (tree / "lib").exists() or not moddir.is_dir():
        return
    (tree / "lib").symlink_to("usr/lib")
    (tree / "boot").mkdir(exist_ok=True)
    for name in ("vmlinuz", "config", "System.map"):
        if (moddir / name).exists():
            (tree / "boot" / f"{name}-{rel}").symlink_to(f"../usr/lib/modules/{rel}/{name}")


def fetch_stock(series: str) -> str:
    """Make the newest stock kernel of *series* ready in the cache; its release string."""
    dist = DIST[series]
    online = _update(dist)
    rel = _newest_in_archive(series) if online else None
    if rel is None:
        rel = _newest_cached(series)
        if rel is None:
            raise FetchError(f"no Debian {series} kernel in the archive or the cache")
        _say(f"{series}: archive unavailable, using cached {rel}")
    dest = root() / "stock" / rel
    if not (dest / ".complete").exists():
        # bookworm's -unsigned image holds vmlinuz and modules; sid's image package is a
        # metapackage over linux-binary-<rel> and linux-modules-<rel>.
        image = f"linux-image-{rel}" + ("" if dist == "sid" else "-unsigned")
        headers = f"linux-headers-{rel}"
        parts = _depends(image, dist, rel) if dist == "sid" else []
        pkgs = list(dict.fromkeys([image, *parts, headers, *_depends(headers, dist, rel)]))
        debs = _download(pkgs, dist)
        (root() / "stock").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{rel}.", dir=root() / "stock"))
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        _merged_usr_layout(tmp, rel)
        _relink_absolute(tmp, dest)
        # The package's postinst runs depmod; the initramfs builder needs modules.dep.
        subprocess.run(["depmod", "-b", str(tmp), rel], check=True)
        versions = "".join(f"{d.name.split('_')[0]} {d.name.split('_')[1]}\n" for d in debs)
        (tmp / "PACKAGES").write_text(versions)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        (dest / ".complete").write_text(rel + "\n")
        for deb in debs:  # unpacked: the tree is what is kept
            deb.unlink()
        _say(f"{series}: {rel} unpacked into {dest}")
    link = root() / "stock" / series
    if not link.is_symlink() or os.readlink(link) != rel:
        tmp_link = link.with_name(f".{series}.link")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(rel)
        tmp_link.rename(link)
    return rel


def stock_dir(series_or_release: str) -> Path:
    """The unpacked tree of a stock kernel: a series ("6.1") or a full release string."""
    d = root() / "stock" / series_or_release
    if not (d / ".complete").exists():
        raise FileNotFoundError(f"{d}: not fetched; run qemu-tests/host-setup.sh")
    return d.resolve()


def release(series_or_release: str) -> str:
    return (stock_dir(series_or_release) / ".complete").read_text().strip()


# --------------------------------------------------------------------------- tool packages


def fetch_package(pkg: str) -> Path:
    """The unpacked files of *pkg*'s newest version (the cached newest one when the archive
    cannot be reached): ``$CACHE/debian/pkg/<pkg>/<version>``, laid out as the package
    installs them (``usr/sbin/kdump-config``, ...), with the control files in ``DEBIAN/``
    (``md5sums`` tells whether a file is the package's).  Nothing is installed: the
    maintainer scripts, which would configure the host, never run."""
    base = root() / "pkg" / pkg
    current = base / "current"
    ver = _candidate(pkg) if _update() else None
    if ver is None:
        if (current / ".complete").exists():
            _say(f"{pkg}: archive unavailable, using cached {os.readlink(current)}")
            return current.resolve()
        raise FetchError(f"no {pkg} in the archive or the cache")
    name = ver.split(":", 1)[-1]  # an epoch only orders versions; the tree is named without
    dest = base / name
    if not (dest / ".complete").exists():
        (deb,) = _download([pkg])
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=base))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp / "DEBIAN")], check=True)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        (dest / ".complete").write_text(f"{pkg} {ver}\n")
        deb.unlink()
        _say(f"{pkg} {ver} unpacked into {dest}")
    if not current.is_symlink() or os.readlink(current) != name:
        tmp_link = base / ".current.link"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(name)
        tmp_link.rename(current)
    return dest


def package_dir(pkg: str) -> Path:
    """The newest fetched tree of *pkg*, without asking the archive; fetched if none is."""
    current = root() / "pkg" / pkg / "current"
    if (current / ".complete").exists():
        return current.resolve()
    return fetch_package(pkg)


# --------------------------------------------------------------------------- debug info


class NotOffered(FetchError):
    """The archive no longer has the -dbg package of a release (and none is cached)."""


# Where the -dbg package of each dist puts vmlinux.  bookworm's has the file in boot/; sid's
# (merged /usr) has it under lib/modules/<release>/, and boot/vmlinux-<release> is only a
# symlink to it, which tar would extract as a dangling link.
DBG_MEMBER = {
    "bookworm": "./usr/lib/debug/boot/vmlinux-{rel}",
    "sid": "./usr/lib/debug/lib/modules/{rel}/vmlinux",
}


def _series_of(rel: str) -> str:
    """The series a stock release string belongs to ("7.2" for 7.2.13+deb14-amd64)."""
    for series, pat in IMAGE.items():
        if pat.match(f"linux-image-{rel}") or pat.match(f"linux-image-{rel}-unsigned"):
            return series
    raise FetchError(f"{rel} is not a release of a Debian stock series ({', '.join(SERIES)})")


def _image_version(rel: str) -> str | None:
    """The version of the image package the cached stock tree of *rel* came from: bookworm's
    linux-image-<rel>-unsigned, or sid's linux-image-<rel> (the metapackage over its parts)."""
    try:
        text = (stock_dir(rel) / "PACKAGES").read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        name, _, ver = line.partition(" ")
        if name in (f"linux-image-{rel}-unsigned", f"linux-image-{rel}"):
            return ver
    return None


def fetch_dbg(series_or_release: str) -> Path:
    """``vmlinux`` with DWARF of a stock kernel, from Debian's linux-image-<release>-dbg.

    Downloaded once (about 1 GB), only the one file is extracted, and the .deb is deleted.
    The package must be the build of the image the guests boot (same version): debug info
    of another build would give the debuggers wrong offsets.  Raises NotOffered when the
    archive no longer has it."""
    rel = release(series_or_release) if "-" not in series_or_release else series_or_release
    dest = root() / "dbg" / rel
    vmlinux = dest / "vmlinux"
    if vmlinux.exists():
        return vmlinux
    dist = DIST[_series_of(rel)]
    pkg = f"linux-image-{rel}-dbg"
    if not _update(dist):
        raise NotOffered(f"{pkg}: the archive cannot be reached and it is not cached")
    ver = _candidate(pkg, dist)
    if ver is None:
        raise NotOffered(f"the archive no longer offers {pkg}")
    image = _image_version(rel)
    if image is not None and image != ver:
        raise NotOffered(f"the archive offers {pkg} {ver}, not {image} of the booted image")
    (deb,) = _download([pkg], dist)
    dest.mkdir(parents=True, exist_ok=True)
    member = DBG_MEMBER[dist].format(rel=rel)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", tmp, member], stdin=fsys.stdout)
        fsys.stdout.close()
        if fsys.wait() != 0 or tar.returncode != 0:
            raise FetchError(f"{deb.name}: could not extract {member}")
        os.replace(Path(tmp) / member, vmlinux)
    (dest / "PACKAGE").write_text(f"{pkg} {ver}\n")
    deb.unlink()
    _say(f"{pkg} {ver}: {vmlinux} ({vmlinux.stat().st_size >> 20} MiB)")
    return vmlinux


# --------------------------------------------------------------------------- sources


def fetch_source(series: str) -> Path:
    """Debian's patched source tarball of *series* (newest in the archive, else cached)."""
    src = root() / "src"
    src.mkdir(parents=True, exist_ok=True)
    tarball = src / f"linux-source-{series}.tar.xz"
    version_file = src / f"linux-source-{series}.version"
    pkg = f"linux-source-{series}"
    dist = DIST[series]
    ver = _candidate(pkg, dist) if _update(dist) else None
    if ver is None:
        if tarball.exists():
            return tarball
        raise FetchError(f"no {pkg} in the archive or the cache")
    if tarball.exists() and version_file.exists() and version_file.read_text().strip() == ver:
        return tarball
    (deb,) = _download([pkg], dist)
    with tempfile.TemporaryDirectory(dir=src) as tmp:
        member = f"./usr/src/linux-source-{series}.tar.xz"
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, stdout=open(
            Path(tmp) / "deb.tar", "wb"))  # fmt: skip
        subprocess.run(["tar", "xf", "deb.tar", member], cwd=tmp, check=True)
        os.replace(Path(tmp) / member, tarball)
    version_file.write_text(ver + "\n")
    deb.unlink()
    _say(f"{pkg} {ver} -> {tarball}")
    return tarball


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch stock images, modules and headers")
    f.add_argument("series", nargs="*", help=f"any of {', '.join(SERIES)} (default: all)")
    s = sub.add_parser("source", help="fetch a source tarball and print its path")
    s.add_argument("series", choices=SERIES)
    r = sub.add_parser("release", help="print the cached release string of a series")
    r.add_argument("series")
    pk = sub.add_parser("package", help="fetch and unpack a tool package; print its tree")
    pk.add_argument("name")
    dg = sub.add_parser("dbg", help="fetch a stock kernel's vmlinux with debug info")
    dg.add_argument("series", help="a series (6.1) or a cached release string")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "fetch":
            for series in a.series or SERIES:
                if series not in SERIES:
                    raise FetchError(f"unknown series {series} (one of {', '.join(SERIES)})")
                print(fetch_stock(series))
        elif a.cmd == "source":
            print(fetch_source(a.series))
        elif a.cmd == "package":
            print(fetch_package(a.name))
        elif a.cmd == "dbg":
            print(fetch_dbg(a.series))
        else:
            print(release(a.series))
    except (FetchError, FileNotFoundError, subprocess.CalledProcessError) as e:
        _say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
