# RECONFIG dev_size: the LUN grows, the initiator gets CAPACITY DATA HAS
# CHANGED, sees the new capacity and can write past the old end.
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
runner_start && result runner ok || result runner fail
timeout 60 $TS lun create g0 --backstore file --path /mnt/scratch/grow.img --size 256M --option create=1 >/dev/null && result create ok || result create fail
dev=$(loop_export g0) && result export "$dev" || result export fail
result cap_before "$(sg_readcap -l "$dev" | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1/p')"

# The attribute write waits for the daemon's RECONFIG_DEVICE_DONE.
timeout 60 sh -c "echo $((512<<20)) > /sys/kernel/config/target/core/user_1/g0/attrib/dev_size" && result reconfig ok || result reconfig fail
result backing_size "$(stat -c %s /mnt/scratch/grow.img)"
# The first command after the resize reports the unit attention.
ua=$(sg_turs -v "$dev" 2>&1)
printf '%s\n' "$ua" | sed 's/^/@@LOG turs /'
printf '%s\n' "$ua" | grep -qi 'capacity data has changed' && result ua ok || result ua fail
echo 1 > /sys/block/${dev#/dev/}/device/rescan
result cap_after "$(sg_readcap -l "$dev" | sed -n 's/.*Device size: \([0-9]*\) bytes.*/\1/p')"
result blockdev_size "$(blockdev --getsize64 "$dev")"

# Write and read back 1 MiB at 384 MiB (past the old end).
head -c $((1<<20)) /dev/urandom > /mnt/scratch/pattern
dd if=/mnt/scratch/pattern of="$dev" bs=1M seek=384 oflag=direct status=none && result write_past ok || result write_past fail
dd if="$dev" of=/mnt/scratch/readback bs=1M skip=384 count=1 iflag=direct status=none
cmp -s /mnt/scratch/pattern /mnt/scratch/readback && result readback ok || result readback fail

# A dev_config change to another subtype is refused with a reason; the LUN keeps serving.
timeout 60 sh -c "echo ram/ > /sys/kernel/config/target/core/user_1/g0/attrib/dev_config" 2>/dev/null && result subtype_change accepted || result subtype_change refused
dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none && result still_serving ok || result still_serving fail
runner_stop
dump_log runner "$RUNNER_LOG" 30
echo "@@EXIT 0"
