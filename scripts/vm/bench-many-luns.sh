# Guest scenario for `scripts/bench vm-many`: one busy LUN and N busy LUNs at
# once (BENCH_LUNS, default 8), each runner's LUNs against as many in-kernel
# fileio LUNs, at both completion affinities, with the guest's CPU per I/O.
#
# Backstores: N fileio (buffered, like bench-file-vs-fileio.sh), N tcmu-ts
# `file` LUNs served by one daemon and, unless BENCH_REFERENCE=none, N LUNs
# served by Debian's tcmu-runner (qcow handler serving raw files, see
# bench-file-vs-fileio.sh). Every backstore is linked into two tcm_loop
# targets: one with the kernel's default completion affinity (-1,
# "submitter": what targetcli users get) and one with -2 ("current": what
# `tcmu-ts lun export` sets), so each job runs once per affinity on the very
# same backstores.
#
# Jobs (BENCH_MANY_JOBS, from bench-lib.sh's list, default randread4k) run as
#   <job>-1lun-<affinity>: on the first LUN of each kind;
#   <job>-<N>lun-<affinity>: one fio job per LUN, all N at once, aggregate IOPS;
# in a rotated order per round. Each LUN's region is BENCH_SIZE (default 32M
# here, so the N LUNs of all three kinds stay in the guest's page cache).
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-8}
BENCH_SIZE=${BENCH_SIZE:-32M}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
N=${BENCH_LUNS:-8}
JOBS=${BENCH_MANY_JOBS:-randread4k}
SIZE=268435456
S=/mnt/scratch
fail() { bench_fail "$@"; }
bench_reference
case "$N" in ''|*[!0-9]*) fail "BENCH_LUNS must be a number, not '$N'" ;; esac
[ "$N" -ge 2 ] && [ "$N" -le 32 ] || fail "BENCH_LUNS must be 2-32"

# target per affinity; LUN numbers: fileio 0..N-1, tcmu-ts N..2N-1, tcmu-runner 2N..3N-1
declare -A WWN=([submitter]=naa.5001405aa0000021 [current]=naa.5001405aa0000031)
declare -A NEXUS=([submitter]=naa.5001405aa0000022 [current]=naa.5001405aa0000032)
declare -A AFF=([submitter]=-1 [current]=-2)
for a in submitter current; do
  mkdir -p "$CFG/loopback/${WWN[$a]}/tpgt_1" && echo "${AFF[$a]}" > "$CFG/loopback/${WWN[$a]}/param/cmd_completion_affinity" \
    || fail "cannot set cmd_completion_affinity=${AFF[$a]} on the $a target"
done
export_on() { LOOP_WWN=${WWN[$1]} LOOP_NEXUS=${NEXUS[$1]} loop_export "$2" "$3"; }

kinds=(fileio tcmu-ts)
[ "$reference" = tcmu-runner ] && kinds+=(tcmu-runner)
tcmu_uios=() tr_uios=()
for ((i = 0; i < N; i++)); do
  truncate -s $SIZE $S/fio$i.img $S/ts$i.img
  fileio_create fio$i $S/fio$i.img $SIZE "${BENCH_FILEIO_OPTS-fd_buffered_io=1}" || fail "fileio $i"
  tcmu_create ts$i file/$S/ts$i.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device $i"
  tcmu_uios+=("$(uio_of ts$i)")
  if [ "$reference" = tcmu-runner ]; then
    truncate -s $SIZE $S/tr$i.img
    tcmu_create tr$i qcow/$S/tr$i.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device $i"
    tr_uios+=("$(uio_of tr$i)")
  fi
done
RUNNER_EXPECT="${tcmu_uios[*]}" runner_start --subtypes file || fail "runner did not start"
if [ "$reference" = tcmu-runner ]; then
  tr_start
  for u in "${tr_uios[@]}"; do wait_for 60 holds_uio "$TR_PID" "$u" || fail "tcmu-runner did not open $u"; done
fi
# devs[<kind>,<affinity>] = "/dev/sdX /dev/sdY ..." (N of them)
declare -A devs
for a in submitter current; do
  for ((i = 0; i < N; i++)); do
    d=$(export_on $a fio$i $i) || fail "export fio$i"; devs[fileio,$a]+="$d "
    d=$(export_on $a ts$i $((N + i))) || fail "export ts$i"; devs[tcmu-ts,$a]+="$d "
    if [ "$reference" = tcmu-runner ]; then
      d=$(export_on $a tr$i $((2 * N + i))) || fail "export tr$i"; devs[tcmu-runner,$a]+="$d "
    fi
  done
done
for k in "${!devs[@]}"; do
  for d in ${devs[$k]}; do [ -b "$d" ] || fail "$k: $d is not a block device"; done
done
version=; [ "$reference" = tcmu-runner ] && version=" reference_version=$(tr_version)"
erms=no; grep -qw erms /proc/cpuinfo && erms=yes
echo "@@BENCH-INFO kernel=$(uname -r) luns=$N runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE/LUN warmup=${BENCH_WARMUP}s cpus=$(nproc) clocksource=$(bench_clocksource) erms=$erms reference=$reference$version"

# Fill each LUN's region once (reads then hit data), all LUNs of a kind at
# once, then a short untimed random read on all of them (JIT warm-up).
for kind in "${kinds[@]}"; do
  # shellcheck disable=SC2086
  set -- ${devs[$kind,current]}
  jobs=(); for d in "$@"; do jobs+=(--name=prefill --filename="$d"); done
  fio --eta=never --rw=write --bs=1M --iodepth=8 --ioengine=libaio --direct=1 --size="$BENCH_SIZE" \
      --output=/dev/null "${jobs[@]}" || fail "prefill $kind"
  if [ "${BENCH_WARMUP:-0}" != 0 ]; then
    jobs=(); for d in "$@"; do jobs+=(--name=warmup --filename="$d"); done
    fio --eta=never --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size="$BENCH_SIZE" \
        --time_based --runtime="$BENCH_WARMUP" --output=/dev/null "${jobs[@]}" || fail "warm-up $kind"
  fi
done

nk=${#kinds[@]}
for job in $JOBS; do
  for shape in 1 "$N"; do
    for a in submitter current; do
      name="$job-${shape}lun-$a"
      for round in $(seq 1 "$BENCH_ROUNDS"); do
        for ((i = 0; i < nk; i++)); do
          kind=${kinds[$(( (round - 1 + i) % nk ))]}
          # shellcheck disable=SC2086
          set -- ${devs[$kind,$a]}
          [ "$shape" = 1 ] && set -- "$1"
          out=$(bench_job "$job" "$@") || out="0 0 0"
          set -- $out
          echo "@@BENCH job=$name lun=$kind round=$round iops=$1 mbps=$2 cpu=${3:-0}"
        done
      done
    done
  done
done
teardown_all
runner_stop
tr_stop
