#!/usr/bin/env bash
# Builds the deployable artifact for one architecture (arm64, the deploy default, or
# x86_64) into $HOIST_CACHE/sam/build-ARCH, and prints each function's size.
# Then: sam deploy --guided -t $HOIST_CACHE/sam/build-ARCH/template.yaml (README, "Deploy").
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
export PATH="$VENV_TOOLS/bin:$PATH"
# The Lambda binaries' profile: release without LTO, 16 codegen units. They wait on the
# network, not the CPU; LTO made each of the 13 binaries take a minute to link, per
# architecture, on every change to the shared crate. Set here, for the deploy build and
# the tested one alike, so what is tested is what deploys (bench/sam_local.md: sizes).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
ARCH="${1:-arm64}"
case "$ARCH" in arm64) TRIPLE=aarch64-unknown-linux-gnu ;; x86_64) TRIPLE=x86_64-unknown-linux-gnu ;; *) echo "ARCH is arm64 or x86_64" >&2; exit 2 ;; esac
bash scripts/install.sh
rustup target list --installed | grep -qx "$TRIPLE" || rustup target add "$TRIPLE"
BUILD="$HOIST_CACHE/sam/build-$ARCH"
# The template's required parameters only matter at deploy time; build needs placeholders.
HOIST_ARCH=$ARCH sam build --beta-features --build-in-source --build-dir "$BUILD" \
  --parameter-overrides Architecture="$ARCH" JwtIssuer=build JwtAudience=build AllowedOrigins=https://build.invalid JwksJson='{"keys":[]}' \
  >"$HOIST_RUN/sam-build-$ARCH.log" 2>&1 || { tail -n 40 "$HOIST_RUN/sam-build-$ARCH.log"; exit 1; }
python3 - "$BUILD" "$ARCH" <<'PY'
import os, subprocess, sys
build, arch = sys.argv[1:]
want = {"arm64": "aarch64", "x86_64": "x86-64"}[arch]
rows = []
for d in sorted(os.listdir(build)):
    b = os.path.join(build, d, "bootstrap")
    if os.path.isfile(b):
        kind = subprocess.run(["file", "-b", b], capture_output=True, text=True).stdout
        assert want in kind.replace("_", "-"), f"{d}: {kind}"
        rows.append(f"{d} {os.path.getsize(b) / 2**20:.1f} MiB")
assert len(rows) >= 12, rows
ext = os.path.join(build, "ClamavLayer", "extensions", "clamd")
clamd = os.path.join(build, "ClamavLayer", "clamav", "sbin", "clamd")
for f in (ext, clamd):
    kind = subprocess.run(["file", "-b", f], capture_output=True, text=True).stdout
    assert want in kind.replace("_", "-"), f"{f}: {kind}"
layer = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(build, "ClamavLayer")) for f in fs)
print(f"sam-build ({arch}): " + ", ".join(rows) + f"; ClamavLayer {layer / 2**20:.1f} MiB")
PY
