# Guest scenario: a Ceph cluster made by scripts/ceph.sh inside the VM (its
# state on the ext4 scratch disk), an image rbd/disk0 served by `tcmu-ts
# serve` through the rbd handler on tcm_loop. Acceptance 1 (ext4 round trip,
# fio verify, `rbd export` equals a dd of the LUN) and 5 (COMPARE AND WRITE
# miscompare writes nothing). Sourced after guest-lib.sh.
set -u
CEPH_DIR=/mnt/scratch/ceph
export CEPH_CONF=$CEPH_DIR/ceph.conf
SIZE=$((1 << 30))
MNT=/mnt/lun

finish() {
  mountpoint -q $MNT && umount $MNT
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 60
  bash "$TCMU_TS_ROOT/scripts/ceph.sh" stop $CEPH_DIR >/dev/null 2>&1
  exit "${1:-0}"
}

ceph_start $CEPH_DIR || finish 1
check rbd_create rbd create rbd/disk0 --size 1G || finish 1

if uio=$(tcmu_create lun0 "rbd/rbd/disk0;conf=$CEPH_CONF;osd_op_timeout=60" $SIZE); then result create "$uio"; else result create fail; finish 1; fi
if RUNNER_TIMEOUT=300 runner_start; then result runner ok; else result runner fail; finish 1; fi
if sd=$(loop_export lun0 0); then result export "$sd"; else result export fail; finish 1; fi

out=$(sg_readcap -l "$sd" 2>&1); result readcap_rc $?
result readcap_blocks "$(sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p' <<<"$out")"
out=$(sg_vpd -p 0xb0 "$sd" 2>&1)
result vpdb0_max_caw "$(sed -n 's/^ *Maximum compare and write length: *\([0-9]*\).*/\1/p' <<<"$out")"

# -- acceptance 1 ------------------------------------------------------------------
ext4_roundtrip "$sd" $MNT 120
check fio fio --name=verify --filename="$sd" --rw=randwrite --bsrange=4k-1M \
  --ioengine=libaio --direct=1 --iodepth=32 --offset=256M --size=64M \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3

# -- acceptance 5: COMPARE AND WRITE (one 512-byte block, atomic on the OSD) -------
LBA=$(( (900 << 20) / 512 ))
head -c 512 /dev/urandom > /tmp/old
head -c 512 /dev/urandom > /tmp/new
head -c 512 /dev/urandom > /tmp/wrong
dd if=/tmp/old of="$sd" bs=512 seek=$LBA count=1 oflag=direct status=none
cat /tmp/wrong /tmp/new > /tmp/caw-miss
cat /tmp/old /tmp/new > /tmp/caw-hit
sg_compare_and_write --in=/tmp/caw-miss --lba=$LBA --num=1 --xferlen=1024 "$sd" >/tmp/caw.out 2>&1
result caw_miss_rc $?
dump_log caw_miss /tmp/caw.out 10
result caw_miss_unchanged "$(dd if="$sd" bs=512 skip=$LBA count=1 iflag=direct status=none | cmp -s - /tmp/old && echo yes || echo no)"
sg_compare_and_write --in=/tmp/caw-hit --lba=$LBA --num=1 --xferlen=1024 "$sd" >/tmp/caw.out 2>&1
result caw_hit_rc $?
result caw_hit_written "$(dd if="$sd" bs=512 skip=$LBA count=1 iflag=direct status=none | cmp -s - /tmp/new && echo yes || echo no)"

# -- rbd export (another librbd client) equals what the initiator reads -------------
check sync sg_sync "$sd"
lun_sum=$(dd if="$sd" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
result lun_sum "$lun_sum"
result export_sum "$(rbd export --no-progress rbd/disk0 - 2>/dev/null | sha256sum | cut -d' ' -f1)"

# -- acceptance 3: `rbd resize` (another client) grows the LUN ------------------------
NEW=$((1280 << 20))
check rbd_resize rbd resize --no-progress rbd/disk0 --size 1280M
wait_for 120 grep -qx $NEW $CFG/core/user_1/lun0/attrib/dev_size
result resize_dev_size "$(cat $CFG/core/user_1/lun0/attrib/dev_size)"
sg_turs "$sd" >/dev/null 2>&1   # takes the CAPACITY DATA HAS CHANGED unit attention
echo 1 > /sys/block/${sd#/dev/}/device/rescan
wait_for 30 grep -qx $((NEW / 512)) /sys/block/${sd#/dev/}/size
result resize_blocks "$(cat /sys/block/${sd#/dev/}/size)"

# Throughput is measured by benchmarks, not here (TCG numbers need a same-boot reference).
finish 0
