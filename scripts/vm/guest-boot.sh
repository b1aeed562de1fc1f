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
# The target core first: its dbroot (where persistent reservation and ALUA
# state live; default /etc/target, read-only here) can only be changed before
# any fabric module (tcm_loop, iscsi_target_mod) registers, and PERSISTENT
# RESERVE OUT (REGISTER) fails NOT READY / LOGICAL UNIT COMMUNICATION FAILURE
# when it cannot write there.
export TCMU_VM_DBROOT=/run/target-db
if ! modprobe -d "$TCMU_VM_KDIR" -a configfs target_core_mod; then
  echo "@@VM error=modprobe modules=\"configfs target_core_mod\""
fi
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
# The core writes PR state to <dbroot>/pr/aptpl_<serial> (also when APTPL is
# off) and ALUA state under <dbroot>/alua; it creates neither directory.
# The dbroot write checks the path from this chroot, but the core's worker
# threads resolve it from the initramfs root (PID 1's): create it in both.
mkdir -p "$TCMU_VM_DBROOT/pr" "$TCMU_VM_DBROOT/alua" \
  "/proc/1/root$TCMU_VM_DBROOT/pr" "/proc/1/root$TCMU_VM_DBROOT/alua"
if ! echo "$TCMU_VM_DBROOT" > /sys/kernel/config/target/dbroot; then
  echo "@@VM error=dbroot dir=$TCMU_VM_DBROOT"
fi
if ! modprobe -d "$TCMU_VM_KDIR" -a $TCMU_VM_MODULES; then
  echo "@@VM error=modprobe modules=\"$TCMU_VM_MODULES\""
fi
ip link set lo up 2>/dev/null
echo "@@VM phase=ready uptime=$(cut -d' ' -f1 /proc/uptime)"

cd /mnt/scratch
bash /mnt/scratch/.vm/script.sh
rc=$?
echo "@@EXIT $rc"
exit $rc
