# Guest scenario for `scripts/bench vm-xfer`: sequential 1 MiB I/O (qd8) on
# TCMU LUNs created with different largest transfers (hw_max_sectors, in
# 512-byte blocks: BENCH_XFER_SECTORS, default "1024 2048"), against the
# in-kernel fileio backstore (which takes up to 8 MiB per command), same boot.
#
# A 1 MiB request on a LUN whose Block Limits VPD says 512 KiB reaches the
# runner as two commands; the kernel's TCMU data area (max_data_area_mb) must
# hold qd x transfer at once. The script prints both (@@INFO lines), and for
# each tcmu-ts run the daemon's read/write system calls per MiB from
# /proc/PID/io (syscr/syscw): reads done through io_uring make no syscr, so
# syscw during a read job is mostly the ring kicks (one write(2) per batch);
# and the daemon's ring engine's iovecs and kicks per command.
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-6}
BENCH_JOBS=${BENCH_JOBS:-"seqread1m seqwrite1m"}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SECTORS=${BENCH_XFER_SECTORS:-"1024 2048"}
SIZE=1073741824
S=/mnt/scratch
fail() { bench_fail "$@"; }
bench_reference
# TCMU LUNs on a target with completion affinity "current" (-2), as in
# bench-file-vs-fileio.sh; fileio on the default target.
W=naa.5001405aa0000061 X=naa.5001405aa0000062
mkdir -p "$CFG/loopback/$W/tpgt_1" && echo -2 > "$CFG/loopback/$W/param/cmd_completion_affinity" || fail "affinity"
tcmu_export() { LOOP_WWN=$W LOOP_NEXUS=$X loop_export "$@"; }

truncate -s $SIZE $S/ref.img
fileio_create ref $S/ref.img $SIZE "${BENCH_FILEIO_OPTS-fd_buffered_io=1}" || fail "fileio"
luns=(fileio "$(loop_export ref 0)")
# LUNs on the TCMU target are numbered from 0: a target whose first LUN is 1
# never got a block device for it (the scan at the nexus found no LUN 0).
uios=() n=-1 trs=()
for s in $SECTORS; do
  truncate -s $SIZE $S/ts$s.img
  d="$CFG/core/user_1/ts$s"; mkdir -p "$d"
  echo -n "dev_config=file/$S/ts$s.img,dev_size=$SIZE,hw_max_sectors=$s,nl_reply_supported=-1" > "$d/control" || fail "control ts$s"
  echo 1 > "$d/enable" || fail "enable ts$s"
  uios+=("$(uio_of ts$s)")
  if [ "$reference" = tcmu-runner ]; then
    truncate -s $SIZE $S/tr$s.img
    d="$CFG/core/user_1/tr$s"; mkdir -p "$d"
    echo -n "dev_config=qcow/$S/tr$s.img,dev_size=$SIZE,hw_max_sectors=$s,nl_reply_supported=-1" > "$d/control" || fail "control tr$s"
    echo 1 > "$d/enable" || fail "enable tr$s"
    trs+=("$(uio_of tr$s)")
  fi
done
RUNNER_EXPECT="${uios[*]}" runner_start --subtypes file || fail "runner did not start"
[ "$reference" = tcmu-runner ] && { tr_start; for u in "${trs[@]}"; do wait_for 60 holds_uio "$TR_PID" "$u" || fail "tcmu-runner $u"; done; }
for s in $SECTORS; do
  n=$((n + 1)); luns+=("tcmu-ts-$s" "$(tcmu_export ts$s $n)")
  [ "$reference" = tcmu-runner ] && { n=$((n + 1)); luns+=("tcmu-runner-$s" "$(tcmu_export tr$s $n)"); }
done
for ((i = 1; i < ${#luns[@]}; i += 2)); do [ -b "${luns[$i]}" ] || fail "no block device (${luns[*]})"; done
for s in $SECTORS; do
  a="$CFG/core/user_1/ts$s/attrib"
  echo "@@INFO ts$s hw_max_sectors=$(cat $a/hw_max_sectors) max_data_area_mb=$(cat $a/max_data_area_mb 2>/dev/null) data_pages_per_blk=$(cat $a/data_pages_per_blk 2>/dev/null) cmd_ring_size_mb=$(cat $a/cmd_ring_size_mb 2>/dev/null) hw_queue_depth=$(cat $a/hw_queue_depth)"
done
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  b=${luns[$i]#/dev/}
  echo "@@INFO ${luns[$((i - 1))]} $b max_sectors_kb=$(cat /sys/block/$b/queue/max_sectors_kb) max_hw_sectors_kb=$(cat /sys/block/$b/queue/max_hw_sectors_kb) nr_requests=$(cat /sys/block/$b/queue/nr_requests)"
done
erms=no; grep -qw erms /proc/cpuinfo && erms=yes
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) erms=$erms hw_max_sectors=$(echo $SECTORS | tr ' ' /) tcmu_affinity=current"
bench_prepare "${luns[@]}"

# syscalls of the daemon per MiB moved, and its ring engine's iovecs and kicks
# per command (`tcmu-ts status --json`), one extra untimed run per tcmu-ts LUN and job
io_calls() { awk '/^syscr:/ { r = $2 } /^syscw:/ { w = $2 } END { print r, w }' /proc/"$RUNNER_PID"/io; }
for job in $BENCH_JOBS; do
  for ((i = 1; i < ${#luns[@]}; i += 2)); do
    case "${luns[$((i - 1))]}" in tcmu-ts-*) ;; *) continue ;; esac
    name=ts${luns[$((i - 1))]#tcmu-ts-}
    c0=$(io_calls) e0=$(bench_engine_counts "$name")
    out=$(bench_job "$job" "${luns[$i]}") || out="0 0 0"
    c1=$(io_calls) e1=$(bench_engine_counts "$name")
    set -- $out $c0 $c1
    echo "@@INFO syscalls job=$job lun=${luns[$((i - 1))]} mbps=$2 syscr_per_MiB=$(awk -v a="$4" -v b="$6" -v m="$2" -v t="$BENCH_RUNTIME" 'BEGIN { printf "%.2f", (b - a) / (m * (t + 1)) }') syscw_per_MiB=$(awk -v a="$5" -v b="$7" -v m="$2" -v t="$BENCH_RUNTIME" 'BEGIN { printf "%.2f", (b - a) / (m * (t + 1)) }')"
    read -r n0 v0 k0 _ <<< "$e0"
    read -r n1 v1 k1 _ <<< "$e1"
    echo "@@INFO engine job=$job lun=${luns[$((i - 1))]} commands=$((n1 - n0)) iovecs_per_command=$(awk -v n="$((n1 - n0))" -v v="$((v1 - v0))" 'BEGIN { printf "%.2f", n ? v / n : 0 }') kicks_per_command=$(awk -v n="$((n1 - n0))" -v k="$((k1 - k0))" 'BEGIN { printf "%.3f", n ? k / n : 0 }')"
  done
done
bench_compare "${luns[@]}"
teardown_all
runner_stop
tr_stop
