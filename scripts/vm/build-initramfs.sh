#!/usr/bin/env bash
# Build the tiny initramfs: static busybox, the modules needed to reach the
# host root over 9p and the ext4 scratch disk (in dependency order, resolved by
# `modprobe --show-depends` against the cached kernel), and scripts/vm/init.
# Usage: build-initramfs.sh CACHE_DIR KERNEL_VERSION
set -euo pipefail
CACHE="$1"; KVER="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KDIR="$CACHE/kernel"
work="$(mktemp -d "$CACHE/initramfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work"/{bin,dev,proc,sys,newroot,modules}
cp /bin/busybox "$work/bin/busybox"
# only the applets init needs; the rest of the work happens in the host root
for a in sh mount umount mkdir insmod cat echo sleep poweroff chroot grep sed sync ls kill; do
  ln -s busybox "$work/bin/$a"
done

# Order matters and duplicates must go: keep the first occurrence.
: > "$work/modules/order"
for m in virtio_pci 9pnet_virtio 9p virtio_blk ext4; do
  modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  base="$(basename "$ko")"
  case "$base" in
    *.ko.xz)  xz -dc "$ko" > "$work/modules/${base%.xz}"; base="${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$ko" > "$work/modules/${base%.zst}"; base="${base%.zst}" ;;
    *)        cp "$ko" "$work/modules/$base" ;;
  esac
  echo "$base" >> "$work/modules/order"
done

install -m 0755 "$HERE/init" "$work/init"
# The kernel's request_module() runs /sbin/modprobe in PID 1's root (this
# initramfs): hand it to the host's modprobe over the cached module tree.
mkdir -p "$work/sbin"
cat > "$work/sbin/modprobe" <<EOS
#!/bin/sh
exec /bin/chroot /newroot /sbin/modprobe -d "$KDIR" "\$@"
EOS
chmod 0755 "$work/sbin/modprobe"
(cd "$work" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$CACHE/initramfs.cpio.gz.tmp"
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
echo "initramfs: $(wc -l < "$work/modules/order") modules, $(du -h "$CACHE/initramfs.cpio.gz" | cut -f1)" >&2
