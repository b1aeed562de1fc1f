#!/usr/bin/env bash
# Prepare the real-kernel test bed (idempotent; safe to run again).
#  1. host tools from Debian (apt-get update only when something is missing)
#  2. Debian's stock kernel, resolved at run time (old ABIs leave the mirror),
#     extracted into .cache/vm/kernel and depmod'ed there
#  3. a tiny busybox initramfs (scripts/vm/build-initramfs.sh)
# Output: .cache/vm/{kernel/,vmlinuz,kver,initramfs.cpio.gz}
set -euo pipefail
# The body is one compound command, parsed whole before it runs, so editing
# this file while a run is in progress cannot derail that run.
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
CACHE="$(realpath -m "${TCMU_VM_CACHE:-$ROOT/.cache/vm}")"
mkdir -p "$CACHE"
log() { echo "setup: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (apt-get, 9p export of /)"; exit 1; }

# -- 1. host packages -------------------------------------------------------
# busybox-static: the initramfs shell; kmod: depmod/modprobe -d; util-linux:
# blkdiscard in the guest; libaio1: fio's libaio engine; dbus-daemon and
# targetcli-fb: the D-Bus service tests (targetcli's own code asks our
# org.kernel.TCMUService1); systemd: systemd-analyze verify of the unit.
PKGS=(qemu-system-x86 qemu-utils busybox-static kmod cpio fio sg3-utils
      cryptsetup-bin e2fsprogs zstd xz-utils util-linux coreutils libaio1
      iproute2 libiscsi-bin dbus-daemon targetcli-fb systemd)
# Ceph (Debian 12: 16.2): the daemons scripts/ceph.sh runs, the rbd/ceph CLIs,
# and the headers the optional librbd part of the addon builds against.
PKGS+=(ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev librados-dev)
# The addon's qcow2 cluster codec (native/cluster_codec.cc) builds against these.
PKGS+=(libzstd-dev zlib1g-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- 2. the kernel ----------------------------------------------------------
kpkg_for_run() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
KPKG="$(kpkg_for_run || true)"
if [ -z "$KPKG" ]; then
  # apt lists may be absent on a fresh machine
  apt-get update -qq
  KPKG="$(kpkg_for_run)"
fi
[ -n "$KPKG" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
KVER="${KPKG#linux-image-}"

if [ "$(cat "$CACHE/kver" 2>/dev/null || true)" = "$KVER" ] && [ -f "$CACHE/vmlinuz" ] \
   && [ -f "$CACHE/kernel/lib/modules/$KVER/modules.dep" ]; then
  log "kernel $KVER already in $CACHE"
else
  log "fetching $KPKG"
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG")
  rm -rf "$CACHE/kernel"
  mkdir -p "$CACHE/kernel"
  dpkg-deb -x "$tmp"/*.deb "$CACHE/kernel"
  rm -rf "$tmp"
  # Debian's usr-merge: modules may live under usr/lib; modprobe -d wants lib/
  if [ ! -d "$CACHE/kernel/lib/modules/$KVER" ] && [ -d "$CACHE/kernel/usr/lib/modules/$KVER" ]; then
    mkdir -p "$CACHE/kernel/lib/modules"
    ln -s "../../usr/lib/modules/$KVER" "$CACHE/kernel/lib/modules/$KVER"
  fi
  depmod -b "$CACHE/kernel" "$KVER"
  cp "$CACHE/kernel/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"
  echo "$KVER" > "$CACHE/kver"
  rm -f "$CACHE/initramfs.cpio.gz"   # modules changed: rebuild
fi

# -- 3. initramfs -----------------------------------------------------------
# Rebuilt when its sources change or the cache moved (the initramfs's
# /sbin/modprobe names the module tree by absolute path).
if [ ! -f "$CACHE/initramfs.cpio.gz" ] || [ "$ROOT/scripts/vm/init" -nt "$CACHE/initramfs.cpio.gz" ] \
   || [ "$ROOT/scripts/vm/build-initramfs.sh" -nt "$CACHE/initramfs.cpio.gz" ] \
   || [ "$(cat "$CACHE/initramfs.for" 2>/dev/null || true)" != "$CACHE" ]; then
  bash "$ROOT/scripts/vm/build-initramfs.sh" "$CACHE" "$KVER"
  echo "$CACHE" > "$CACHE/initramfs.for"
fi
log "ready: kernel $KVER, cache $CACHE"
exit
}
