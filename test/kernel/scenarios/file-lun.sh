# Guest scenario: a 1 GiB `file` LUN served by `tcmu-ts serve` on tcm_loop,
# checked the way an initiator sees it. Sourced after guest-lib.sh; each step
# prints @@RESULT lines (asserted one by one in file-lun.test.ts) and keeps
# going, so one broken step does not hide the others.
set -u
IMG=/mnt/scratch/lun0.img
SIZE=1073741824
MNT=/mnt/lun

finish() { # always: tear down with the runner still answering, then stop it
  mountpoint -q $MNT && umount $MNT
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  # error/fatal lines (pino levels 50/60): reported, for the host to print
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 60
  exit "${1:-0}"
}

truncate -s $SIZE $IMG
if uio=$(tcmu_create lun0 "file/$IMG" $SIZE); then result create "$uio"; else result create fail; finish 1; fi
if runner_start; then result runner ok; else result runner fail; finish 1; fi
if sd=$(loop_export lun0 0); then result export "$sd"; else result export fail; finish 1; fi

# -- identification ------------------------------------------------------------
out=$(sg_inq "$sd" 2>&1); result inq_rc $?
echo "$out" | sed 's/^/@@LOG inq /'
result inq_pdt "$(sed -n 's/.*PQual=[0-9]  *PDT=\([0-9]*\).*/\1/p' <<<"$out")"
result inq_vendor "$(sed -n 's/^ *Vendor identification: *//p' <<<"$out")"
result inq_product "$(sed -n 's/^ *Product identification: *//p' <<<"$out")"

out=$(sg_vpd -p 0x83 "$sd" 2>&1); result vpd83_rc $?
echo "$out" | sed 's/^/@@LOG vpd83 /'
result vpd83_designators "$(grep -c 'designator type' <<<"$out")"
result vpd83_naa "$(grep -c 'designator type: NAA' <<<"$out")"

out=$(sg_vpd -p 0xb0 "$sd" 2>&1); result vpdb0_rc $?
echo "$out" | sed 's/^/@@LOG vpdb0 /'
result vpdb0_max_transfer "$(sed -n 's/^ *Maximum transfer length: *\([0-9]*\).*/\1/p' <<<"$out")"
result vpdb0_max_unmap "$(sed -n 's/^ *Maximum unmap LBA count: *\([0-9]*\).*/\1/p' <<<"$out")"

out=$(sg_vpd -p 0xb2 "$sd" 2>&1); result vpdb2_rc $?
echo "$out" | sed 's/^/@@LOG vpdb2 /'
result vpdb2_lbpu "$(sed -n 's/^ *Unmap command supported (LBPU): *\([0-9]\).*/\1/p' <<<"$out")"

out=$(sg_readcap -l "$sd" 2>&1); result readcap_rc $?
echo "$out" | sed 's/^/@@LOG readcap /'
CAP=$(sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p' <<<"$out")
result readcap_blocks "$CAP"
result readcap_block_len "$(sed -n 's/^ *Logical block length=\([0-9]*\).*/\1/p' <<<"$out")"
result readcap_lbpme "$(sed -n 's/.*lbpme=\([0-9]\).*/\1/p' <<<"$out")"

out=$(sg_modes "$sd" 2>&1); result modes_rc $?
echo "$out" | sed 's/^/@@LOG modes /'
result modes_caching "$(grep -c '^>> Caching' <<<"$out")"
result modes_control "$(grep -c '^>> Control' <<<"$out")"

# -- a filesystem round trip ------------------------------------------------------
# A fixed subset of /usr/share/doc (host root, read-only) is the payload.
ext4_roundtrip "$sd" $MNT 250

# -- fio with data verification -----------------------------------------------------
check fio fio --name=verify --filename="$sd" --rw=randwrite --bsrange=4k-1M \
  --ioengine=libaio --direct=1 --iodepth=32 --offset=256M --size=128M \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3

# -- discard punches holes in the backing file -------------------------------------
result discard_max_bytes "$(cat /sys/block/${sd#/dev/}/queue/discard_max_bytes)"
OFF=$((768 << 20)); LEN=$((64 << 20))
dd if=/dev/urandom of="$sd" bs=1M seek=768 count=64 oflag=direct status=none
sync
result discard_blocks_before "$(stat -c %b $IMG)"
check discard blkdiscard -f -o $OFF -l $LEN "$sd"
sync
result discard_blocks_after "$(stat -c %b $IMG)"

# -- I/O beyond the end --------------------------------------------------------------
if [ -n "$CAP" ]; then
  lba=$(printf '%016x' "$CAP" | sed 's/../& /g')
  out=$(sg_raw -r 512 "$sd" 88 00 $lba 00 00 00 01 00 00 2>&1); result oor_read_rc $?
  echo "$out" | sed 's/^/@@LOG oor_read /'
  result oor_read_key "$(sed -n 's/.*Sense key: *\(.*\)$/\1/p' <<<"$out" | head -1)"
  result oor_read_asc "$(sed -n 's/.*Additional sense: *\(.*\)$/\1/p' <<<"$out" | head -1)"
  head -c 512 /dev/zero > /tmp/blk
  out=$(sg_raw -s 512 -i /tmp/blk "$sd" 8a 00 $lba 00 00 00 01 00 00 2>&1); result oor_write_rc $?
  echo "$out" | sed 's/^/@@LOG oor_write /'
  result oor_write_key "$(sed -n 's/.*Sense key: *\(.*\)$/\1/p' <<<"$out" | head -1)"
  result oor_write_asc "$(sed -n 's/.*Additional sense: *\(.*\)$/\1/p' <<<"$out" | head -1)"
fi

finish 0
