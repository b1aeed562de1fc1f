# Guest scenario for `scripts/bench vm-profile`: where the guest's CPU goes
# during 1 MiB sequential I/O (qd8) on fileio, a tcmu-ts `file` LUN and
# (unless BENCH_REFERENCE=none) Debian tcmu-runner's LUN, same boot, same
# targets as bench-file-vs-fileio.sh. For each LUN and job: fio runs
# BENCH_RUNTIME seconds while `perf record -a` samples every CPU (cpu-clock:
# TCG has no hardware counters); the report prints the share of samples by
# thread name and by kernel symbol, the busiest first (@@PROF lines).
# BENCH_PROFILE_JOBS: jobs from bench-lib.sh (default seqread1m seqwrite1m).
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-8}
BENCH_WARMUP=${BENCH_WARMUP:-3}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
JOBS=${BENCH_PROFILE_JOBS:-"seqread1m seqwrite1m"}
SIZE=1073741824
S=/mnt/scratch
fail() { bench_fail "$@"; }
command -v perf >/dev/null || fail "perf is not installed (Debian package linux-perf)"
bench_reference
echo 0 > /proc/sys/kernel/kptr_restrict
echo -1 > /proc/sys/kernel/perf_event_paranoid

TCMU_WWN=naa.5001405aa0000071 TCMU_NEXUS=naa.5001405aa0000072
mkdir -p "$CFG/loopback/$TCMU_WWN/tpgt_1" && echo -2 > "$CFG/loopback/$TCMU_WWN/param/cmd_completion_affinity" || fail "affinity"
tcmu_target_export() { LOOP_WWN=$TCMU_WWN LOOP_NEXUS=$TCMU_NEXUS loop_export "$@"; }
truncate -s $SIZE $S/ref.img $S/tcmu.img
fileio_create ref $S/ref.img $SIZE fd_buffered_io=1 || fail "fileio"
tcmu_create tcmu file/$S/tcmu.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device"
RUNNER_EXPECT=$(uio_of tcmu) runner_start --subtypes file || fail "runner did not start"
luns=(fileio "$(loop_export ref 0)" tcmu-ts "$(tcmu_target_export tcmu 0)")
if [ "$reference" = tcmu-runner ]; then
  truncate -s $SIZE $S/reference.img
  tcmu_create reference qcow/$S/reference.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device"
  tr_start
  wait_for 60 holds_uio "$TR_PID" "$(uio_of reference)" || fail "tcmu-runner did not open its device"
  luns+=(tcmu-runner "$(tcmu_target_export reference 1)")
fi
bench_prepare "${luns[@]}"

P=/tmp/perf.data
for job in $JOBS; do
  for ((i = 0; i < ${#luns[@]}; i += 2)); do
    label=${luns[$i]} dev=${luns[$((i + 1))]}
    ( sleep 2; perf record -q -a -e cpu-clock -F 499 -o $P -- sleep "$(( BENCH_RUNTIME - 3 ))" >/dev/null 2>&1 ) &
    prof=$!
    out=$(bench_job "$job" "$dev") || out="0 0 0"
    wait $prof
    set -- $out
    echo "@@PROF $job $label iops=$1 mbps=$2 cpu_us=$3"
    perf report -i $P --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9.]+%' | head -12 | sed "s/^/@@PROF $job $label comm /"
    perf report -i $P --stdio --no-children --sort sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30 | sed "s/^/@@PROF $job $label sym /"
    perf report -i $P --stdio --no-children --sort comm,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30 | sed "s/^/@@PROF $job $label comm+sym /"
    rm -f $P
  done
done
teardown_all
runner_stop
tr_stop
