# Guest scenario for `scripts/bench vm-ab`: this checkout's tcmu-ts against
# another build of tcmu-ts (BENCH_BASE, e.g. a git worktree of an older
# commit with `npx node-gyp rebuild && npx tsc -p .` done), same boot, same
# tcm_loop target, fio jobs in a rotated order (bench-lib.sh), with the
# in-kernel fileio backstore as the reference both are read against:
#   fileio    LIO fileio, buffered (fd_buffered_io=1), kernel-default
#             completion affinity, as in `scripts/bench vm`
#   tcmu-ts   this checkout's daemon, built-in `file` handler
#   base      BENCH_BASE's daemon serving the same handler code of its own
#             tree, registered as the user handler `filebase` (module path
#             BENCH_BASE/dist/handlers/file/index.js, the very module its
#             built-in lookup would load), so neither daemon ever looks at the
#             other's device: each answers only for its own subtype.
# Both TCMU LUNs are on a target with completion affinity "current", what
# `tcmu-ts lun export` sets, or the kernel's default with
# BENCH_COMPLETION_AFFINITY=submitter. Output: @@BENCH lines for bench-table.sh.
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-8}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=1073741824
S=/mnt/scratch
fail() {
  echo "bench: $*" >&2
  teardown_all; runner_stop
  [ -n "${BASE_PID:-}" ] && kill "$BASE_PID" 2>/dev/null
  dump_log runner "$RUNNER_LOG"; dump_log base /run/base.log
  exit 1
}
[ -f "${BENCH_BASE:-}/dist/src/cli/main.js" ] || fail "BENCH_BASE must be a built tcmu-ts checkout (dist/src/cli/main.js), not '${BENCH_BASE:-}'"
TCMU_WWN=naa.5001405aa0000021 TCMU_NEXUS=naa.5001405aa0000022
bench_affinity
mkdir -p "$CFG/loopback/$TCMU_WWN/tpgt_1" && echo $affinity > "$CFG/loopback/$TCMU_WWN/param/cmd_completion_affinity" \
  || fail "cannot set cmd_completion_affinity on the TCMU target"
tcmu_target_export() { LOOP_WWN=$TCMU_WWN LOOP_NEXUS=$TCMU_NEXUS loop_export "$@"; }

truncate -s $SIZE $S/ref.img $S/head.img $S/base.img
fileio_create ref $S/ref.img $SIZE fd_buffered_io=1 || fail "fileio"
tcmu_create head file/$S/head.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device"
tcmu_create base filebase/$S/base.img $SIZE nl_reply_supported=-1 >/dev/null || fail "base device"
printf '[daemon]\ncontrol_socket = "/run/base.sock"\nallowed_dirs = ["%s", "%s"]\n[daemon.handlers]\nfilebase = "%s"\n' \
  "$BENCH_BASE/dist" "$S" "$BENCH_BASE/dist/handlers/file/index.js" > /run/base.toml
node "$BENCH_BASE/dist/src/cli/main.js" serve --config /run/base.toml --subtypes filebase > /run/base.log 2>&1 &
BASE_PID=$!
wait_for 120 holds_uio "$BASE_PID" "$(uio_of base)" || fail "the base daemon did not open its device"
RUNNER_EXPECT=$(uio_of head) runner_start --subtypes file || fail "runner did not start"
luns=(fileio "$(loop_export ref 0)" tcmu-ts "$(tcmu_target_export head 0)" base "$(tcmu_target_export base 1)")
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  [ -b "${luns[$i]}" ] || fail "a LUN has no block device (${luns[*]})"
done
erms=no; grep -qw erms /proc/cpuinfo && erms=yes
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) clocksource=$(bench_clocksource) erms=$erms base=$(cd "$BENCH_BASE" && git rev-parse --short HEAD 2>/dev/null || echo "$BENCH_BASE") completion_affinity=fileio:submitter,others:$BENCH_COMPLETION_AFFINITY"
bench_prepare "${luns[@]}"
bench_compare "${luns[@]}"
teardown_all
runner_stop
kill "$BASE_PID" 2>/dev/null; wait "$BASE_PID" 2>/dev/null
