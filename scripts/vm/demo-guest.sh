# Guest scenario for scripts/demo.sh: serve a `file` LUN (and a qcow2 LUN when
# that handler is built) with tcmu-ts, put ext4 on each, write files, run fio.
# Lines starting with `demo:` are shown live on the host.
set -u
say() { echo "demo: $*"; }
fail() { say "FAILED: $*"; dump_log runner "$RUNNER_LOG" 30; teardown_all; runner_stop; exit 1; }
SIZE=1073741824
LUNS="file"
truncate -s $SIZE /mnt/scratch/demo.img
tcmu_create demo_file file//mnt/scratch/demo.img $SIZE >/dev/null || fail "create file LUN"
if [ -d "$TCMU_TS_ROOT/dist/handlers/qcow2" ]; then
  qemu-img create -q -f qcow2 /mnt/scratch/demo.qcow2 1G &&
    tcmu_create demo_qcow2 qcow2//mnt/scratch/demo.qcow2 $SIZE >/dev/null && LUNS="file qcow2"
fi
say "TCMU devices: $(cat /sys/class/uio/uio*/name | tr '\n' ' ')"
runner_start || fail "tcmu-ts serve did not start"
say "tcmu-ts serve is up (pid $RUNNER_PID)"
lun=0
for kind in $LUNS; do
  sd=$(loop_export "demo_$kind" $lun) || fail "export $kind"
  say "$kind LUN $lun -> $sd: $(sg_inq "$sd" | sed -n 's/^ *Vendor identification: *//p') $(sg_readcap -l "$sd" | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1 bytes/p')"
  mkfs.ext4 -q -F "$sd" || fail "mkfs on $kind"
  mkdir -p /mnt/$kind && mount "$sd" /mnt/$kind || fail "mount $kind"
  cp -a /usr/share/doc/bash /usr/share/doc/coreutils /mnt/$kind/ 2>/dev/null
  say "$kind: wrote $(find /mnt/$kind -type f | wc -l) files; df: $(df -h /mnt/$kind | awk 'NR==2{print $3 " used of " $2}')"
  r=$(fio --name=demo --directory=/mnt/$kind --size=64M --rw=randrw --bs=4k --iodepth=16 \
        --ioengine=libaio --direct=1 --time_based --runtime=10 --output-format=terse --terse-version=3 2>&1 |
      awk -F';' '{printf "read %.0f IOPS, write %.0f IOPS (TCG-emulated guest)", $8, $49}')
  say "$kind: fio 10 s 4k randrw qd16: $r"
  umount /mnt/$kind
  lun=$((lun + 1))
done
if [ -f /mnt/scratch/demo.qcow2 ] && [[ " $LUNS " == *" qcow2 "* ]]; then
  teardown_all
  say "qcow2: qemu-img check: $(qemu-img check /mnt/scratch/demo.qcow2 2>&1 | head -1)"
fi
say "backing files: $(du -h --apparent-size /mnt/scratch/demo.img | cut -f1) apparent, $(du -h /mnt/scratch/demo.img | cut -f1) allocated"
teardown_all || fail "teardown"
runner_stop || fail "runner did not stop cleanly"
say "done: runner stopped cleanly"
