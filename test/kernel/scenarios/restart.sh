# Restart without loss: fio writes with verification while the daemon is
# killed with SIGKILL and restarted 10 times. Before each kill a marker block
# is written with O_DIRECT|O_SYNC (acknowledged => durable); all markers must
# read back intact at the end.
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
truncate -s 512M /mnt/scratch/lun.img
runner_start && result runner ok || result runner fail
# cmd_time_out 120 s: a command left in the ring by a kill fails once it is
# older than that, and a daemon start under TCG takes 8-33 s with fio running
# (see qcow2-kill.sh); the outages are printed as restart_ms.
timeout 60 $TS lun create r0 --backstore file --path /mnt/scratch/lun.img --size 512M --cmd-timeout 120 >/dev/null && result create ok || result create fail
dev=$(loop_export r0) && result export "$dev" || result export fail

# fio jobs back to back until the kill loop is over, so every kill lands in
# the middle of verified I/O: each job writes 24 MiB at random (4k-256k) in
# the first 256 MiB, then reads it all back checking crc32c (small jobs: the
# last one runs on after the kills, and TCG writes ~1 MiB/s through fio's
# verify pattern). Markers live above.
rm -f /mnt/scratch/kills.done
( n=0 bad=0
  while [ ! -f /mnt/scratch/kills.done ]; do
    n=$((n+1))
    fio --name=restart$n --filename="$dev" --rw=randwrite --bsrange=4k-256k --iodepth=16 \
        --ioengine=libaio --direct=1 --size=24M --offset=$(( (n % 4) * 64 ))M --verify=crc32c --verify_fatal=1 \
        --output=/mnt/scratch/fio$n.out >/dev/null 2>&1 || { bad=$((bad+1)); cp /mnt/scratch/fio$n.out /mnt/scratch/fio-failed.out; }
    grep -q 'err= 0' /mnt/scratch/fio$n.out || bad=$((bad+1))
  done
  echo "$n $bad" > /mnt/scratch/fio.summary ) &
FIO=$!
restart_ms=""
kills=0 busy_kills=0 restarts=0 markers=0
for i in $(seq 1 10); do
  sleep 2
  # A durable marker: 4 KiB of known content at 300 MiB + i*64 KiB.
  head -c 4096 /dev/urandom > /mnt/scratch/marker$i
  if dd if=/mnt/scratch/marker$i of="$dev" bs=4096 seek=$(( (300<<20)/4096 + i*16 )) oflag=direct,sync conv=notrunc status=none; then
    markers=$((markers+1))
  fi
  # Kill only while the initiator has commands in flight on the LUN (bounded wait).
  wait_for 30 dev_busy "$dev" && busy_kills=$((busy_kills+1))
  t_kill=$(date +%s%N)
  kill -KILL "$RUNNER_PID" && kills=$((kills+1))
  wait "$RUNNER_PID" 2>/dev/null
  RUNNER_PID=
  sleep 1
  RUNNER_LOG=/mnt/scratch/runner$i.log runner_start && restarts=$((restarts+1))
  restart_ms="$restart_ms $(( ($(date +%s%N) - t_kill) / 1000000 ))"
done
result kills "$kills"
result kills_under_io "$busy_kills"
result restarts "$restarts"
result restart_ms "${restart_ms# }"
result markers_written "$markers"

touch /mnt/scratch/kills.done
timed fio_tail wait $FIO
read fio_jobs fio_bad < /mnt/scratch/fio.summary
result fio_jobs "$fio_jobs"
result fio_failed "$fio_bad"
[ -f /mnt/scratch/fio-failed.out ] && grep -E 'err=|verify|bad' /mnt/scratch/fio-failed.out | head -8 | sed 's/^/@@LOG fio /'

intact=0
for i in $(seq 1 10); do
  dd if="$dev" of=/mnt/scratch/back$i bs=4096 skip=$(( (300<<20)/4096 + i*16 )) count=1 iflag=direct status=none
  cmp -s /mnt/scratch/marker$i /mnt/scratch/back$i && intact=$((intact+1))
done
result markers_intact "$intact"

result hung_tasks "$(dmesg | grep -c 'blocked for more than')"
result io_errors "$(dmesg | grep -c 'I/O error')"
dmesg | grep -iE 'tcmu|I/O error|blocked' | tail -15 | sed 's/^/@@LOG dmesg /'
runner_stop
dump_log runner /mnt/scratch/runner10.log 20
echo "@@EXIT 0"
