#!/usr/bin/env bash
# A Debian arm64 root (Jetson's CPU architecture) run through qemu-user-static, cached in
# ROOT between runs: `scripts/arm64_root.sh ROOT` makes it (once) and mounts /proc, /sys,
# /dev inside; `scripts/arm64_root.sh ROOT --umount` takes the mounts down again.
# Needs root and Debian's debootstrap, qemu-user-static and binfmt-support (installed here
# with apt-get when missing).
set -euo pipefail
ROOT=$(realpath -m "${1:?usage: arm64_root.sh ROOT [--umount]}")
SUITE=${ARM64_SUITE:-bookworm}

umount_all() {
    for m in proc/cpuinfo dev/pts dev sys proc; do
        mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m" || true
    done
}
remove_root() {  # never delete through a mount (the host's /dev and /sys are bound inside)
    umount_all
    if [ -n "$(findmnt -rn -o TARGET | grep -F "$ROOT/" || true)" ]; then
        echo "arm64 root: mounts remain under $ROOT; not deleting it" >&2; exit 1
    fi
    rm -rf "$ROOT"
}
case "${2:-}" in
    --umount) umount_all; exit 0 ;;
    --remove) [ -e "$ROOT" ] && remove_root; exit 0 ;;
esac

if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap qemu-user-static binfmt-support
fi
# aarch64 binaries run through qemu via binfmt_misc (containers often lack the mount)
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
test -e /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "arm64 root: qemu-aarch64 is not registered in binfmt_misc" >&2; exit 1; }

if [ ! -e "$ROOT/.fakedet-root-ready" ]; then
    # the host's own Debian mirror (apt's sources), else debootstrap's default
    MIRROR=$(grep -rhoE '^(URIs:|deb) *[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
             | head -1 | sed -E 's/^(URIs:|deb) *//; s/ *$//' || true)
    [ -e "$ROOT" ] && remove_root
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --arch=arm64 --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOT" ${MIRROR:+"$MIRROR"}
    touch "$ROOT/.fakedet-root-ready"
fi
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/sys" || mount --rbind /sys "$ROOT/sys"
mountpoint -q "$ROOT/dev" || mount --rbind /dev "$ROOT/dev"
# qemu-user shows the host's (x86) /proc/cpuinfo, which crashes ONNX Runtime's CPU probe on
# import: show the emulated CPU's instead (test_arm64.sh runs qemu as a Cortex-A76: ARMv8.2
# with the dot-product instructions, like Jetson Orin's Cortex-A78AE)
if ! mountpoint -q "$ROOT/proc/cpuinfo"; then
    : > "$ROOT/etc/cpuinfo.arm64"
    for cpu in 0 1; do
        printf 'processor\t: %s\nBogoMIPS\t: 62.50\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' \
            "$cpu" "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" >> "$ROOT/etc/cpuinfo.arm64"
    done
    mount --bind "$ROOT/etc/cpuinfo.arm64" "$ROOT/proc/cpuinfo"
fi
# pip inside verifies TLS with the host's CA bundle (it may hold a proxy's certificate)
for ca in "${SSL_CERT_FILE:-}" "${REQUESTS_CA_BUNDLE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$ca" ] && [ -f "$ca" ]; then cp "$ca" "$ROOT/etc/ssl/certs/host-ca.crt"; break; fi
done
