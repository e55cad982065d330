#!/usr/bin/env python3
"""Bundles clamd and freshclam with every shared library they need, its own dynamic loader included,
into a Lambda layer directory (scanner/Makefile, `build-ClamavLayer`).

Why bundle the loader: Lambda's OS is Amazon Linux 2023, not Debian. clamd from Debian's
packages needs Debian's glibc and a dozen libraries Amazon Linux does not have. Run through
the layer's own `ld-linux` with `--library-path`, it uses only what the layer holds, on any
Linux kernel (the extension starts it that way).

The packages are Debian's, for the target architecture (`amd64` or `arm64`), fetched with
`apt-get download` and unpacked with `dpkg -x` (never installed). Which libraries are needed
is read from the ELF files themselves (`readelf -d`, DT_NEEDED), transitively, so the
bundle is complete by construction and the script fails if a library cannot be found.

Usage: bundle_clamd.py --arch x86_64|arm64 --out DIR [--cache DIR]
"""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEB_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
MULTIARCH = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
LOADER = {"x86_64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}
# Start from the daemon, freshclam (the definitions update) and libc; the rest is found
# from DT_NEEDED.
ROOTS = ["clamav-daemon", "clamav-freshclam", "libc6"]
PROGRAMS = {"sbin/clamd": "usr/sbin/clamd", "bin/freshclam": "usr/bin/freshclam"}


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def needed(path):
    out = run("readelf", "-d", str(path))
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def package_of(soname):
    """The Debian package shipping `soname` (asked of the host's dpkg database, whose
    package names are the same for every architecture); apt-file is not needed."""
    out = subprocess.run(["dpkg", "-S", f"*/{soname}"], text=True, capture_output=True).stdout
    for line in out.splitlines():
        pkg = line.split(":", 1)[0].split(",")[0].strip()
        if pkg:
            return pkg
    # Not installed on the host: ask apt which package provides it by its usual name.
    base = soname.split(".so")[0]
    return {"libclamav": "libclamav12", "libfreshclam": "libclamav12"}.get(base)


SUDO = [] if os.geteuid() == 0 else ["sudo"]


def ensure_arch(deb_arch):
    host = run("dpkg", "--print-architecture").strip()
    if deb_arch == host:
        return
    if deb_arch not in run("dpkg", "--print-foreign-architectures").split():
        subprocess.run(SUDO + ["dpkg", "--add-architecture", deb_arch], check=True)
        subprocess.run(SUDO + ["apt-get", "update", "-qq"], check=True)


def candidate(pkg, deb_arch):
    """The version apt would install now (so the layer follows Debian's security updates)."""
    out = run("apt-cache", "show", "--no-all-versions", f"{pkg}:{deb_arch}")
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    sys.exit(f"bundle: apt knows no {pkg}:{deb_arch}")


def fetch(pkg, deb_arch, cache, stage):
    debs = cache / deb_arch
    debs.mkdir(parents=True, exist_ok=True)
    version = candidate(pkg, deb_arch)
    # Debian's file names spell an epoch's ':' as '%3a'.
    name = version.replace(":", "%3a")
    found = [p for p in (debs / f"{pkg}_{name}_{deb_arch}.deb", debs / f"{pkg}_{name}_all.deb") if p.exists()]
    if not found:
        subprocess.run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", f"{pkg}:{deb_arch}={version}"],
                       cwd=debs, check=True, stdout=subprocess.DEVNULL)
        found = [p for p in (debs / f"{pkg}_{name}_{deb_arch}.deb", debs / f"{pkg}_{name}_all.deb") if p.exists()]
    if not found:
        sys.exit(f"bundle: could not download {pkg}:{deb_arch}={version}")
    run("dpkg", "-x", str(found[0]), str(stage))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=DEB_ARCH, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/hoist/clamav-debs"))
    a = ap.parse_args()
    deb_arch, multiarch = DEB_ARCH[a.arch], MULTIARCH[a.arch]
    cache = Path(a.cache)
    stage = cache / f"stage-{deb_arch}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    ensure_arch(deb_arch)

    fetched = set()
    for pkg in ROOTS:
        fetch(pkg, deb_arch, cache, stage)
        fetched.add(pkg)
    lib_dirs = [stage / "usr/lib" / multiarch, stage / "lib" / multiarch, stage / "usr/lib"]

    def locate(soname):
        for d in lib_dirs:
            if (d / soname).exists():
                return d / soname
        return None

    todo, libs = [stage / p for p in PROGRAMS.values()], {}
    while todo:
        elf = todo.pop()
        for soname in needed(elf):
            if soname in libs:
                continue
            path = locate(soname)
            if path is None:
                pkg = package_of(soname)
                if not pkg or pkg in fetched:
                    sys.exit(f"bundle: no package provides {soname} (needed by {elf.name})")
                fetch(pkg, deb_arch, cache, stage)
                fetched.add(pkg)
                path = locate(soname)
                if path is None:
                    sys.exit(f"bundle: {pkg} did not provide {soname}")
            libs[soname] = path
            todo.append(path)

    out = Path(a.out) / "clamav"
    shutil.rmtree(out, ignore_errors=True)
    (out / "lib").mkdir(parents=True)
    for dest, src in PROGRAMS.items():
        (out / dest).parent.mkdir(exist_ok=True)
        shutil.copy2(stage / src, out / dest)
    for soname, path in sorted(libs.items()):
        shutil.copy2(path.resolve(), out / "lib" / soname)
    loader = locate(LOADER[a.arch]) or (stage / "lib64" / LOADER[a.arch])
    if not loader.exists():
        sys.exit(f"bundle: no {LOADER[a.arch]} in libc6:{deb_arch}")
    shutil.copy2(loader.resolve(), out / "lib" / LOADER[a.arch])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"bundle: clamd, freshclam + {len(libs)} libraries + loader for {a.arch}, {size / 2**20:.1f} MiB "
          f"(packages: {', '.join(sorted(fetched))})", file=sys.stderr)


if __name__ == "__main__":
    main()
