#!/usr/bin/env bash
# lutsr on aarch64 under qemu-user: the exactness tests and every bundled LUT against the reference.
#
#   sudo tools/arm64_check.sh [ROOT]      (as root: apt-get, binfmt_misc, chroot)
#
# The first run sets up an arm64 Debian 12 root in ROOT (default ~/.cache/lutsr/arm64-root, or
# $LUTSR_ARM64_ROOT; about 30 minutes: debootstrap, then numpy/numba wheels for aarch64), later runs
# reuse it. Each run copies this working tree and ../shared/conformance into the root, installs lutsr
# there and runs, emulated: tools/check_exact.py (every bundled LUT, the layered golden vectors; it
# prints which layered CPU path ran) and the kernel exactness tests. Too slow for every CI run (tens of
# minutes emulated); run it when a kernel or the CPU dispatch changes, and before a release.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-${LUTSR_ARM64_ROOT:-$HOME/.cache/lutsr/arm64-root}}"
# The parity suite (its NEON entry is what runs there; CUDA and WebGPU are deselected, slow under emulation).
tests="${LUTSR_ARM64_TESTS:-tests/test_parity.py tests/test_layered_neon.py tests/test_reference.py tests/test_layered.py tests/test_layered_numba.py tests/test_numba.py tests/test_fileformat.py tests/test_importers.py}"

need_packages=()
command -v qemu-aarch64-static >/dev/null || need_packages+=(qemu-user-static)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v update-binfmts >/dev/null || need_packages+=(binfmt-support)
if ((${#need_packages[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}"
fi
# arm64 programs run through qemu by the kernel's binfmt_misc (chroot execs them).
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

# A clean environment inside (the host's pip and SSL settings name host paths); pip there trusts
# what the host trusts (a proxy's own CA, say).
run() {
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/bin:/bin \
        PIP_CERT=/etc/ssl/host-ca.crt "$@"
}

if [ ! -x "$root/usr/bin/python3" ]; then
    echo "== debootstrap: an arm64 Debian 12 root in $root (once)"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian
fi
if ! run python -c "import numba, pytest, setuptools" 2>/dev/null; then
    echo "== numpy, numba and pytest for aarch64 (once)"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/host-ca.crt"
    run python3 -m venv /opt/venv
    run pip install -q numpy numba pytest "setuptools>=68"
fi

echo "== copying the working tree"
rm -rf "$root/work" && mkdir -p "$root/work/main" "$root/work/shared"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$root/work/main"
[ -d "$repo/../shared/conformance" ] && cp -r "$repo/../shared/conformance" "$root/work/shared/"

mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
run sh -c 'cd /work/main && pip install -q --no-deps --no-build-isolation -e . && uname -m'
echo "== every bundled LUT and the layered golden vectors, numba against the reference"
run sh -c 'cd /work/main && python tools/check_exact.py'
echo "== kernel exactness tests"
# shellcheck disable=SC2086 # a list of test files
run sh -c "cd /work/main && python -m pytest -q -p no:cacheprovider -k 'not cudasim and not webgpu' $tests"
