# Guest scenario: crafted qcow2 images next to a good LUN. `tcmu-ts serve`
# serves a good qcow2 LUN under fio --verify (jobs back to back) while LUNs
# on damaged images are added one by one:
#   b1  refcount table entry 0 points at the L1 table   (opened, marked corrupt, read-only; writes refused)
#   b2  L2 entry 0 has a host offset of 2^53            (reads of that cluster fail cleanly)
#   b3  the image is its own backing file               (refused: backing chain loops)
#   b4  l1_size 0x7fffffff                              (refused before any big allocation)
# Checks: fio on the good LUN sees 0 errors, the daemon stays up, every bad
# LUN fails with a log line naming its image and the reason.
# Images are made with qemu-img/qemu-io and patched with python3 at offsets of
# qemu's fixed layout for a fresh 64 KiB-cluster image (asserted below):
# header 0x0, refcount table 0x10000, refcount block 0x20000, L1 0x30000,
# after one write at 0: L2 0x40000, data 0x50000.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
GOOD=$S/good.qcow2

patch() { python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2], 0)); f.write(bytes.fromhex(sys.argv[3]))' "$@"; }
u64at() { python3 -c 'import sys, struct
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2], 0)); print(hex(struct.unpack(">Q", f.read(8))[0]))' "$@"; }
# logged NAME PATTERN: how many runner log lines name the image NAME and match PATTERN
logged() { grep -F "$S/$1.qcow2" "$RUNNER_LOG" | grep -cE "$2"; }
runner_fds() { ls /proc/"$RUNNER_PID"/fd 2>/dev/null | wc -l; }

finish() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  grep -E '"level":[56]0' "$RUNNER_LOG" | tail -n 20 | sed 's/^/@@LOG runner_errors /'
}

# -- images ------------------------------------------------------------------------------------
qemu-img create -q -f qcow2 $GOOD 256M && result good_image ok || result good_image fail
for b in b1 b2; do
  qemu-img create -q -f qcow2 -o cluster_size=65536 $S/$b.qcow2 64M
  qemu-io -c 'write -P 0x11 0 64k' $S/$b.qcow2 >/dev/null
done
result layout "$(u64at $S/b1.qcow2 40) $(u64at $S/b1.qcow2 48) $(u64at $S/b1.qcow2 0x30000)"
patch $S/b1.qcow2 0x10000 0000000000030000           # refcount block 0 := the L1 table
patch $S/b2.qcow2 0x40000 8020000000000000           # COPIED | 2^53
qemu-img create -q -f qcow2 -u -b $S/b3.qcow2 -F qcow2 $S/b3-tmp.qcow2 64M && mv $S/b3-tmp.qcow2 $S/b3.qcow2
qemu-img create -q -f qcow2 $S/b4.qcow2 64M
patch $S/b4.qcow2 36 7fffffff                         # l1_size

# -- the good LUN under verified I/O -------------------------------------------------------------
if runner_start; then result runner ok; else result runner fail; finish; exit 1; fi
out=$(timeout 120 $TS lun create g0 --backstore qcow2 --path $GOOD --size 256M 2>&1) && result good_create ok || { result good_create fail; printf '%s\n' "$out" | sed 's/^/@@LOG good_create /'; }
good=$(loop_export g0 0) && result good_export "$good" || { result good_export fail; finish; exit 1; }
rm -f $S/bad.done
( n=0 bad=0
  while [ ! -f $S/bad.done ]; do
    n=$((n+1))
    fio --name=good$n --filename="$good" --rw=randwrite --bsrange=4k-256k --iodepth=16 \
        --ioengine=libaio --direct=1 --size=32M --offset=$(( (n % 4) * 48 ))M --verify=crc32c --verify_fatal=1 \
        --output=$S/fio$n.out >/dev/null 2>&1 || { bad=$((bad+1)); cp $S/fio$n.out $S/fio-failed.out; }
    grep -q 'err= 0' $S/fio$n.out || bad=$((bad+1))
  done
  echo "$n $bad" > $S/fio.summary ) &
FIO=$!
sleep 3

# -- b1: refcount table entry pointing at the L1 table ------------------------------------------
out=$(timeout 120 $TS lun create b1 --backstore qcow2 --path $S/b1.qcow2 --size 64M 2>&1) && result b1_create ok || result b1_create fail
printf '%s\n' "$out" | sed 's/^/@@LOG b1_create /'
if d1=$(loop_export b1 1); then
  result b1_export ok
  dd if=/dev/zero of="$d1" bs=64k count=1 seek=16 oflag=direct status=none 2>/dev/null && result b1_write accepted || result b1_write refused
  want=$(python3 -c 'import sys; sys.stdout.buffer.write(b"\x11" * 65536)' | sha256sum)
  [ "$(dd if="$d1" bs=64k count=1 iflag=direct status=none | sha256sum)" = "$want" ] && result b1_read ok || result b1_read fail
else result b1_export fail; fi
result b1_log "$(logged b1 'READ-ONLY.*overlaps the l1|overlaps the l1.*READ-ONLY')"

# -- b2: L2 entry with a host offset >= 2^53 ---------------------------------------------------------
out=$(timeout 120 $TS lun create b2 --backstore qcow2 --path $S/b2.qcow2 --size 64M 2>&1) && result b2_create ok || result b2_create fail
printf '%s\n' "$out" | sed 's/^/@@LOG b2_create /'
if d2=$(loop_export b2 2); then
  result b2_export ok
  dd if="$d2" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null && result b2_read accepted || result b2_read refused
  dd if="$d2" of=/dev/null bs=4k count=1 skip=64 iflag=direct status=none 2>/dev/null && result b2_read_other ok || result b2_read_other fail
else result b2_export fail; fi
result b2_log "$(logged b2 '0x20000000000000.*beyond the end of the image file')"

# -- b3: self-referencing backing file ------------------------------------------------------------
fds_before=$(runner_fds)
out=$(timeout 120 $TS lun create b3 --backstore qcow2 --path $S/b3.qcow2 --size 64M 2>&1) && result b3_create ok || result b3_create fail
printf '%s\n' "$out" | sed 's/^/@@LOG b3_create /'
result b3_log "$(logged b3 'backing chain loops')"
result b3_fd_growth $(( $(runner_fds) - fds_before ))

# -- b4: huge l1_size ------------------------------------------------------------------------------------
out=$(timeout 120 $TS lun create b4 --backstore qcow2 --path $S/b4.qcow2 --size 64M 2>&1) && result b4_create ok || result b4_create fail
printf '%s\n' "$out" | sed 's/^/@@LOG b4_create /'
result b4_log "$(logged b4 'l1_size 2147483647 exceeds the 32 MiB limit')"
result runner_rss_kb "$(awk '/VmHWM/ {print $2}' /proc/$RUNNER_PID/status)"

# -- the good LUN kept working; the daemon is up ----------------------------------------------------
sleep 3
touch $S/bad.done
wait $FIO
read fio_jobs fio_bad < $S/fio.summary
result fio_jobs "$fio_jobs"
result fio_failed "$fio_bad"
[ -f $S/fio-failed.out ] && grep -E 'err=|verify|bad' $S/fio-failed.out | head -8 | sed 's/^/@@LOG fio /'
kill -0 "$RUNNER_PID" 2>/dev/null && result runner_alive yes || result runner_alive no
grep -cE 'unhandled|uncaught' "$RUNNER_LOG" | sed 's/^/@@RESULT runner_unhandled=/'
finish
result b1_corrupt_bit "$(qemu-img info --output=json $S/b1.qcow2 | grep -c '"corrupt": true')"
result b1_l1_intact "$(u64at $S/b1.qcow2 0x30000)"
echo "@@EXIT 0"
