# Guest scenario: no data-in byte reaches the initiator unless the runner
# produced it. A READ first leaves a 0xC3 pattern in the LUN's data area;
# then commands that produce less than the initiator's data-in buffer (TEST
# UNIT READY, SYNCHRONIZE CACHE, READ with transfer length 0 given 4 KiB
# buffers; INQUIRY with 36 bytes) must hand back no 0xC3 byte. Sourced after
# guest-lib.sh; prints @@RESULT lines for ring-trust.test.ts.
set -u
IMG=/mnt/scratch/stale.img
SIZE=$((16 << 20))
OUT=/mnt/scratch/datain

finish() { finish_scenario "${1:-0}" 60; }

truncate -s $SIZE $IMG
if uio=$(tcmu_create stale0 "file/$IMG" $SIZE); then result create "$uio"; else result create fail; finish 1; fi
if runner_start; then result runner ok; else result runner fail; finish 1; fi
if sd=$(loop_export stale0 0); then result export "$sd"; else result export fail; finish 1; fi

# datain NAME CDB...: send CDB with a 4 KiB data-in buffer; report bytes received and how many are 0xC3.
datain() {
  local name="$1"; shift
  rm -f $OUT
  sg_raw -r 4096 -o $OUT "$sd" "$@" >/dev/null 2>&1; result "${name}_rc" $?
  result "${name}_bytes" "$(stat -c %s $OUT 2>/dev/null || echo none)"
  result "${name}_c3" "$(od -An -v -tx1 $OUT 2>/dev/null | tr -s ' ' '\n' | grep -c '^c3$')"
}

# Fill the first 4 KiB with 0xC3 and read it back: the data area now holds it.
head -c 4096 /dev/zero | tr '\000' '\303' | dd of="$sd" bs=4096 count=1 oflag=direct status=none
datain read8 28 00 00 00 00 00 00 00 08 00
# The same data-area block is handed out again (lowest free first).
datain tur 00 00 00 00 00 00
datain sync 35 00 00 00 00 00 00 00 00 00
datain read0 28 00 00 00 00 00 00 00 00 00
datain inquiry 12 00 00 00 24 00
datain read8_again 28 00 00 00 00 00 00 00 08 00
finish 0
