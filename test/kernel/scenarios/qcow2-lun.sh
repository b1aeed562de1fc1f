# Guest scenario: a qcow2 overlay (made by `tcmu-ts image create --backing`)
# on a base image made by qemu-img, served by `tcmu-ts serve` as a
# `qcow2//path` LUN on tcm_loop. Checks: base data visible through the LUN,
# ext4 round trip, fio --verify, a live snapshot (create, list, revert), then
# offline with qemu's tools: `qemu-img check`, `qemu-img snapshot -l`, the
# overlay's data as qemu reads it, and the base byte-identical.
# Sourced after guest-lib.sh; every step prints @@RESULT lines (asserted one by
# one in qcow2-lun.test.ts) and the scenario keeps going after a failed step.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
RAW=$S/base.raw
BASE=$S/base.qcow2
OVL=$S/overlay.qcow2
SIZE=1073741824
MNT=/mnt/lun
MiB=1048576
BASE_OFF_MB=900      # 8 MiB of random data in the base image, nowhere else
SNAP_OFF_MB=600      # 4 MiB region used by the snapshot steps
DISC_OFF_MB=980      # 4 MiB of base data the initiator then discards

finish() { # tear down with the runner still answering, then stop it
  mountpoint -q $MNT && umount $MNT
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 60
}
# region DEV OFFSET_MB COUNT_MB -> sha256 of that region read with O_DIRECT
region() { dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1; }
zeros_sum() { head -c $(( $1 * MiB )) /dev/zero | sha256sum | cut -d' ' -f1; }

# -- the base image (qemu-img) and the overlay (tcmu-ts) -----------------------------
truncate -s $SIZE $RAW
head -c $((8 * MiB)) /dev/urandom > $S/base-part
dd if=$S/base-part of=$RAW bs=1M seek=$BASE_OFF_MB conv=notrunc status=none
BASE_PART_SUM=$(sha256sum < $S/base-part | cut -d' ' -f1)
head -c $((4 * MiB)) /dev/urandom > $S/disc-part
dd if=$S/disc-part of=$RAW bs=1M seek=$DISC_OFF_MB conv=notrunc status=none
DISC_PART_SUM=$(sha256sum < $S/disc-part | cut -d' ' -f1)
if check base_create qemu-img convert -f raw -O qcow2 $RAW $BASE; then
  BASE_SHA=$(sha256sum $BASE | cut -d' ' -f1)
  result base_sha_before "$BASE_SHA"
fi
rm -f $RAW
check overlay_create $TS image create $OVL --size 1G --backing $BASE
out=$(qemu-img info --output=json $OVL 2>&1)
printf '%s\n' "$out" | sed 's/^/@@LOG overlay_info /'
result overlay_backing "$(sed -n 's/.*"backing-filename": *"\([^"]*\)".*/\1/p' <<<"$out" | head -1)"

# -- serve it ---------------------------------------------------------------------------
if runner_start; then result runner ok; else result runner fail; finish; exit 1; fi
out=$(timeout 120 $TS lun create q0 --backstore qcow2 --path $OVL --size 1G 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG lun_create /'
[ $rc = 0 ] && result lun_create ok || { result lun_create fail; finish; exit 1; }
result dev_config "$(cat $CFG/core/user_1/q0/attrib/dev_config 2>/dev/null || sed -n 's/.*dev_config=\([^ ]*\).*/\1/p' <<<"$out")"
if sd=$(loop_export q0 0); then result export "$sd"; else result export fail; finish; exit 1; fi
result readcap_bytes "$(blockdev --getsize64 "$sd")"

# -- the base's data shows through the overlay ----------------------------------------
result base_region_src "$BASE_PART_SUM"
result base_region_lun "$(region "$sd" $BASE_OFF_MB 8)"
result zero_region_expect "$(zeros_sum 8)"
result zero_region_lun "$(region "$sd" 960 8)"   # never written anywhere: zeros

# -- ext4 round trip ----------------------------------------------------------------------
# -E nodiscard: the base region at 900 MiB must survive mkfs for the final
# cross-check; UNMAP over backing data is checked on its own below.
ext4_roundtrip "$sd" $MNT 200 -E nodiscard

# -- fio with data verification (allocating writes into the overlay) ------------------
check fio fio --name=verify --filename="$sd" --rw=randwrite --bsrange=4k-1M \
  --ioengine=libaio --direct=1 --iodepth=32 --offset=256M --size=96M \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3

# -- UNMAP over a range that only the backing image holds -----------------------------
# (informational unless the LUN claims LBPRZ: then the range must read zeros)
result discard_max_bytes "$(cat /sys/block/${sd#/dev/}/queue/discard_max_bytes)"
result lbprz "$(sg_readcap -l "$sd" 2>/dev/null | sed -n 's/.*lbprz=\([0-9]\).*/\1/p')"
result disc_region_before "$(region "$sd" $DISC_OFF_MB 4)"
result disc_region_base "$DISC_PART_SUM"
check discard blkdiscard -f -o $((DISC_OFF_MB * MiB)) -l $((4 * MiB)) "$sd"
blockdev --flushbufs "$sd"
sum=$(region "$sd" $DISC_OFF_MB 4)
case "$sum" in
  "$(zeros_sum 4)") result disc_region_after zeros ;;
  "$DISC_PART_SUM") result disc_region_after base ;;
  *) result disc_region_after other ;;
esac

# -- live snapshot ---------------------------------------------------------------------------
head -c $((4 * MiB)) /dev/urandom > $S/m1
head -c $((4 * MiB)) /dev/urandom > $S/m2
M1=$(sha256sum < $S/m1 | cut -d' ' -f1); M2=$(sha256sum < $S/m2 | cut -d' ' -f1)
result m1 "$M1"; result m2 "$M2"
dd if=$S/m1 of="$sd" bs=1M seek=$SNAP_OFF_MB oflag=direct conv=fsync status=none && result write_m1 ok || result write_m1 fail
out=$(timeout 120 $TS snapshot create q0 snap1 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_create /'
[ $rc = 0 ] && result snap_create ok || result snap_create fail
# the LUN keeps serving: the first command sees the unit attention
sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1
dd if=$S/m2 of="$sd" bs=1M seek=$SNAP_OFF_MB oflag=direct conv=fsync status=none && result write_m2 ok || result write_m2 fail
result after_snap_region "$(region "$sd" $SNAP_OFF_MB 4)"
out=$(timeout 60 $TS snapshot list q0 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_list /'
result snap_list_rc $rc
result snap_list_has "$(grep -cw snap1 <<<"$out")"
out=$(timeout 120 $TS snapshot revert q0 snap1 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_revert /'
[ $rc = 0 ] && result snap_revert ok || result snap_revert fail
ua=$(sg_turs -v "$sd" 2>&1); printf '%s\n' "$ua" | sed 's/^/@@LOG turs_after_revert /'
sg_turs "$sd" >/dev/null 2>&1
blockdev --flushbufs "$sd"
result after_revert_region "$(region "$sd" $SNAP_OFF_MB 4)"
result after_revert_base_region "$(region "$sd" $BASE_OFF_MB 8)"

# -- stop serving; inspect the image with qemu's tools -----------------------------------
finish
out=$(qemu-img check $OVL 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG qemu_check /'
result qemu_check_rc $rc
out=$(qemu-img snapshot -l $OVL 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG qemu_snapshots /'
result qemu_snapshot_rc $rc
result qemu_snapshot_has "$(grep -cw snap1 <<<"$out")"
out=$($TS image check $OVL 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG ts_check /'
result ts_check_rc $rc
# qemu reads the overlay as the LUN last showed it (snapshot region = m1; base data through the chain)
# (qemu-img dd cannot skip together with count: convert to a sparse raw file)
if check qemu_convert qemu-img convert -f qcow2 -O raw $OVL $S/ovl.raw; then
  result qemu_snap_region "$(dd if=$S/ovl.raw bs=1M skip=$SNAP_OFF_MB count=4 status=none | sha256sum | cut -d' ' -f1)"
  result qemu_base_region "$(dd if=$S/ovl.raw bs=1M skip=$BASE_OFF_MB count=8 status=none | sha256sum | cut -d' ' -f1)"
  rm -f $S/ovl.raw
fi
result base_sha_after "$(sha256sum $BASE | cut -d' ' -f1)"
exit 0
