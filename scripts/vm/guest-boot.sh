#!/bin/bash
# Second stage inside the guest (host bash, chrooted into the 9p host root).
# Loads the target modules from the cached kernel, mounts configfs, brings up
# lo, then runs the staged scenario script and reports `@@EXIT n`.
# Everything it needs arrives in /mnt/scratch/.vm/env (written by vm-run.sh).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8
# shellcheck source=/dev/null
. /mnt/scratch/.vm/env

echo "@@VM phase=booted uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"
# Our own modprobe for the kernel's request_module() would need a helper in
# the initramfs root; preloading everything the tests use avoids that.
if ! modprobe -d "$TCMU_VM_KDIR" -a $TCMU_VM_MODULES; then
  echo "@@VM error=modprobe modules=\"$TCMU_VM_MODULES\""
fi
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
ip link set lo up 2>/dev/null
echo "@@VM phase=ready uptime=$(cut -d' ' -f1 /proc/uptime)"

cd /mnt/scratch
bash /mnt/scratch/.vm/script.sh
rc=$?
echo "@@EXIT $rc"
exit $rc
