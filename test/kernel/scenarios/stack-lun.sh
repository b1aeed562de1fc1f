# Guest scenario: a LUN whose dev_config is a stack (example-passthrough over
# file, written top first: "example-passthrough/>file//path"), served by
# `tcmu-ts serve` on tcm_loop. Data written into the file is read back
# through the stack and the reverse; thin provisioning passes through the
# layer (UNMAP punches holes in the file); a RECONFIG to another stack of the
# same subtype reopens the LUN on the other file; malformed stacks are refused
# with a log line naming the layer. Sourced after guest-lib.sh; asserted in
# stack-lun.test.ts.
set -u
S=/mnt/scratch/stack
IMG=$S/lower.img
IMG2=$S/lower2.img
MiB=1048576
SIZE=$((256 * MiB))
mkdir -p $S

finish() { finish_scenario "${1:-0}"; }
# refused_line KEY NEEDLE...: KEY=ok if one runner log line at error level has every NEEDLE
refused_line() { local k="$1" l; shift; l=$(grep '"level":50' "$RUNNER_LOG" 2>/dev/null)
  for n in "$@"; do l=$(grep -F -- "$n" <<<"$l"); done
  if [ -n "$l" ]; then result "$k" ok; printf '%s\n' "$l" | head -1 | cut -c1-600 | sed "s/^/@@LOG $k /"; else result "$k" fail; fi; }
# bad_lun KEY NAME DEV_CONFIG: the kernel's enable must fail (the daemon refused the device)
bad_lun() { local k="$1" name="$2" cfg="$3"
  if timeout 60 bash -c ". $TCMU_TS_ROOT/test/kernel/guest-lib.sh; tcmu_create '$name' '$cfg' $SIZE" >/dev/null 2>&1
  then result "$k" accepted; else result "$k" refused; fi
  rmdir "$CFG/core/user_1/$name" 2>/dev/null; }
# region_sum FILE_OR_DEV OFFSET_MIB COUNT_MIB: sha256 of that region
region_sum() { dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1; }

# Known data in the bottom file before the LUN exists: must be read through the layer.
truncate -s $SIZE $IMG $IMG2
head -c $((4 * MiB)) /dev/urandom > $S/pattern
dd if=$S/pattern of=$IMG bs=1M seek=16 conv=notrunc status=none
head -c $((4 * MiB)) /dev/urandom > $S/pattern2
dd if=$S/pattern2 of=$IMG2 bs=1M seek=16 conv=notrunc status=none
sync
PAT=$(sha256sum < $S/pattern | cut -d' ' -f1)
PAT2=$(sha256sum < $S/pattern2 | cut -d' ' -f1)

STACK="example-passthrough/>file/$IMG"
if uio=$(tcmu_create stack0 "$STACK" $SIZE); then result create "$uio"; else result create fail; finish 1; fi
result dev_config "$(cat $CFG/core/user_1/stack0/attrib/dev_config 2>/dev/null)"
# example-* handlers are no built-in subtype: the daemon serves the stack's top only when told to.
if runner_start --subtypes example-passthrough,file; then result runner ok; else result runner fail; finish 1; fi
if sd=$(loop_export stack0 0); then result export "$sd"; else result export fail; finish 1; fi

out=$(sg_readcap -l "$sd" 2>&1); result readcap_rc $?
echo "$out" | sed 's/^/@@LOG readcap /'
result readcap_blocks "$(sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p' <<<"$out")"
result readcap_lbpme "$(sed -n 's/.*lbpme=\([0-9]\).*/\1/p' <<<"$out")"

# -- data through the layer, both ways ------------------------------------------------
result pattern "$PAT"
result read_through "$(region_sum "$sd" 16 4)"
head -c $((4 * MiB)) /dev/urandom > $S/written
WANT=$(sha256sum < $S/written | cut -d' ' -f1)
result written "$WANT"
dd if=$S/written of="$sd" bs=1M seek=64 oflag=direct conv=fsync status=none && result write ok || result write fail
result write_in_file "$(region_sum $IMG 64 4)"
check sync sg_sync "$sd"
check fio fio --name=verify --filename="$sd" --rw=randwrite --bsrange=4k-256k \
  --ioengine=libaio --direct=1 --iodepth=16 --offset=96M --size=32M \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3

# -- UNMAP passes through the layer to the file ---------------------------------------------
result discard_max_bytes "$(cat /sys/block/${sd#/dev/}/queue/discard_max_bytes)"
dd if=/dev/urandom of="$sd" bs=1M seek=160 count=32 oflag=direct status=none
sync
result discard_blocks_before "$(stat -c %b $IMG)"
check discard blkdiscard -f -o $((160 * MiB)) -l $((32 * MiB)) "$sd"
sync
result discard_blocks_after "$(stat -c %b $IMG)"

# -- RECONFIG to another stack of the same subtype ---------------------------------------
if timeout 60 sh -c "echo -n 'example-passthrough/>file/$IMG2' > $CFG/core/user_1/stack0/attrib/dev_config" 2>/dev/null
then result reconfig ok; else result reconfig fail; fi
result dev_config_after "$(cat $CFG/core/user_1/stack0/attrib/dev_config 2>/dev/null)"
sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1   # take the unit attention the reopen raises
result pattern2 "$PAT2"
result read_after_reconfig "$(region_sum "$sd" 16 4)"

# -- malformed stacks: refused, the log names the layer ---------------------------------
bad_lun gt_in_path bad1 "example-passthrough/>file/$S/a>b.img"
refused_line gt_in_path_log 'cannot serve LUN' 'layer 3 of 3 (bottom)' "separates stack layers"
bad_lun unknown_option bad2 "example-passthrough/;x=1>file/$IMG2"
refused_line unknown_option_log 'cannot serve LUN' 'layer 1 of 2 (top)' 'unknown option' 'allowed: none'

finish 0
