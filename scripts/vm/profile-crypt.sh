# Guest scenario (scripts/vm-run.sh): where the runner's CPU goes under crypt
# writes. A plain file LUN and a crypt-over-file LUN; for each fio job the
# runner runs alone under `node --cpu-prof`, the job runs on one LUN, and
# the runner's CPU time per I/O and the profile's top self-time functions
# are printed. Not a benchmark table: a diagnosis aid.
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
PROFILE_RUNTIME=${PROFILE_RUNTIME:-10}
PROFILE_JOBS=${PROFILE_JOBS:-"randwrite4k seqwrite1m"}
SIZE=$((512 * 1048576))
S=/mnt/scratch/prof-crypt
KD=$S/keys
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
mkdir -p $S $KD && chmod 0700 $KD
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $KD/k1 && chmod 0600 $KD/k1
printf '[daemon]\nkey_dir = "%s"\ncontrol_socket = "%s/control.sock"\n' $KD $S > $S/tcmu-ts.toml
truncate -s $SIZE $S/plain.img
$TS image create $S/enc.img --format crypt --size $SIZE --encrypt luks2 --key-file $KD/k1 --kdf pbkdf2 >/dev/null || { echo "profile: image create" >&2; exit 1; }
fail() { echo "profile: $*" >&2; teardown_all; runner_stop; dump_log runner "$RUNNER_LOG"; exit 1; }
declare -A CFGSTR=([plain]="file/$S/plain.img" [enc]="crypt/;key=k1>file/$S/enc.img")
# runner_start's loop, with the runner under --cpu-prof (not allowed in NODE_OPTIONS)
profiled_runner_start() {
  local end=$(( $(date +%s) + 240 )) rc
  node --cpu-prof --cpu-prof-dir=$S/prof "$TCMU_TS_ROOT/dist/src/cli/main.js" serve "$@" >"$RUNNER_LOG" 2>&1 &
  RUNNER_PID=$!
  while :; do
    _runner_has_all; rc=$?
    [ $rc = 0 ] && return 0
    [ $rc = 2 ] && return 1
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
for job in $PROFILE_JOBS; do
  for lun in plain enc; do
    rm -rf $S/prof && mkdir -p $S/prof
    tcmu_create $lun "${CFGSTR[$lun]}" $SIZE nl_reply_supported=-1 >/dev/null || fail "device $lun"
    RUNNER_EXPECT="$(uio_of $lun)" profiled_runner_start --config $S/tcmu-ts.toml || fail "runner"
    dev=$(loop_export $lun 0) || fail "export"
    bench_prefill "$dev"
    BENCH_WARMUP=3 bench_warmup "$dev"
    t0=$(cpu_ticks $RUNNER_PID)
    out=$(BENCH_RUNTIME=$PROFILE_RUNTIME bench_job $job "$dev")
    t1=$(cpu_ticks $RUNNER_PID)
    set -- $out
    echo "@@PROFILE job=$job lun=$lun iops=$1 mbps=$2 runner_cpu_ticks=$((t1 - t0)) (100/s) per_io_us=$(awk -v t=$((t1 - t0)) -v i=$1 -v r=$PROFILE_RUNTIME 'BEGIN { if (i > 0) printf "%.0f", t * 10000 / (i * (r + 1)) }')"
    teardown_all
    runner_stop
    for p in $S/prof/*.cpuprofile; do node "$TCMU_TS_ROOT/scripts/vm/cpuprofile-top.mjs" "$p" 25 | sed "s/^/@@PROF $job $lun /"; done
  done
done
