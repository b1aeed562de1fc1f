# Guest scenario for `scripts/bench idle`: what BENCH_IDLE_LUNS (16) idle
# `file` LUNs cost a runner: time from start to serving all of them, resident
# memory, and wake-ups per second while nothing happens.
#
# The devices exist before the runner starts (nl_reply_supported=-1, so
# nobody's netlink reply is awaited), as after a reboot with a saved
# configuration; "serving" is the moment the runner holds every device's
# /dev/uioN open, polled every 20 ms. The runner is the first program of
# the boot to read its files, so this start is cold (as after a reboot).
# Then every LUN is exported on tcm_loop and read once (4 KiB), so the idle
# phase follows real I/O, as in use. Last, the runner is stopped and started
# again on the same exported devices: "restart-to-serving" is the time from
# that start until it holds every device again (a warm page cache, as after
# a crash or an upgrade: the LUNs' downtime, beyond the stop).
# Wake-ups: the runner's threads' run counts (/proc/PID/task/*/schedstat,
# third field: times each thread was switched onto a CPU), summed at the
# start and the end of a window. Two windows: the first 10 s after the reads,
# and BENCH_IDLE_SECONDS (10) s after BENCH_IDLE_SETTLE (60) s of quiet. They
# differ for Node: V8 finishes the garbage collections its memory reducer
# schedules once allocation stops (its helper threads and the main thread
# wake in bursts) during the first tens of seconds; a 5 s settle, this
# bench's first version, caught them by chance or not (0.1 to 21 wake-ups/s
# between runs of the same build). RSS is VmRSS from /proc/PID/status at the end.
# The same for Debian's tcmu-runner (qcow handler on raw files) unless
# BENCH_REFERENCE=none.
# Output: @@TABLE lines (the host prints them).
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
N=${BENCH_IDLE_LUNS:-16}
SETTLE=${BENCH_IDLE_SETTLE:-60}
SECONDS_IDLE=${BENCH_IDLE_SECONDS:-10}
SIZE=67108864
S=/mnt/scratch
reference=${BENCH_REFERENCE:-tcmu-runner}
fail() { echo "bench idle: $*" >&2; teardown_all; runner_stop; tr_stop; dump_log runner "$RUNNER_LOG"; exit 1; }

# now_ms: monotonic-enough wall clock in milliseconds
now_ms() { local s; s=$(date +%s%N); echo $(( s / 1000000 )); }
# switches PID: times the process's threads were put on a CPU, summed
switches() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $3 } END { print n + 0 }'; }
# per_thread PID: "comm:switches" for every thread, for the log
per_thread() { local t; for t in /proc/"$1"/task/*; do
  printf '%s:%s ' "$(tr ' ' _ < "$t/comm")" "$(awk '{ print $3 }' "$t/schedstat")"; done; }
# tids PID: the process's thread ids (a thread that exits takes its run count with it)
tids() { ls /proc/"$1"/task 2>/dev/null | tr '\n' ' '; }
# rate A B SECONDS IDS_A IDS_B: wake-ups per second, or "-" when threads came or went in between
rate() { if [ "$4" = "$5" ]; then awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { printf "%.1f", (b - a) / s }'; else echo -; fi; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' /proc/"$1"/status; }
threads() { ls /proc/"$1"/task | wc -l; }
holds_all() { local pid="$1" u; shift; for u in "$@"; do holds_uio "$pid" "$u" || return 1; done; }

# wait_serving LABEL PID: until PID holds every device in $uios (fails after 120 s); sets served_ms from $t0
wait_serving() {
  until holds_all "$2" "${uios[@]}"; do
    kill -0 "$2" 2>/dev/null || fail "$1 exited"
    [ $(( $(now_ms) - t0 )) -lt 120000 ] || fail "$1 not serving after 120 s"
    sleep 0.02
  done
  served_ms=$(( $(now_ms) - t0 ))
}

start_tcmu_ts() {
  node "$TCMU_TS_ROOT/dist/src/cli/main.js" serve --subtypes file >>"$RUNNER_LOG" 2>&1 &
  RUNNER_PID=$!
}
restart_tcmu_ts() { runner_stop || fail "tcmu-ts did not stop"; t0=$(now_ms); start_tcmu_ts; wait_serving tcmu-ts "$RUNNER_PID"; }
restart_tcmu_runner() { tr_stop; t0=$(now_ms); tr_start; wait_serving tcmu-runner "$TR_PID"; }

# measure LABEL PID PREFIX WWN-DIGITS RESTART: start time already in $served_ms; exports,
# reads, idles, then RESTART (a function) times a restart
measure() {
  local label="$1" pid="$2" prefix="$3" restart="$5" i d a b a_t b_t start_ms rss nthreads
  for ((i = 0; i < N; i++)); do
    d=$(LOOP_WWN=naa.5001405aa00000${4} LOOP_NEXUS=naa.5001405aa00001${4} loop_export "$prefix$i" "$i") || fail "$label: export $i"
    dd if="$d" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || fail "$label: read $d"
  done
  local f0 f1 f0_ids f1_ids a_ids b_ids
  f0_ids=$(tids "$pid"); f0=$(switches "$pid"); sleep 10; f1=$(switches "$pid"); f1_ids=$(tids "$pid")
  sleep $(( SETTLE > 10 ? SETTLE - 10 : 0 ))
  a_ids=$(tids "$pid"); a=$(switches "$pid"); a_t=$(per_thread "$pid")
  sleep "$SECONDS_IDLE"
  b=$(switches "$pid"); b_t=$(per_thread "$pid"); b_ids=$(tids "$pid")
  echo "@@LOG $label threads before: $a_t"
  echo "@@LOG $label threads after:  $b_t"
  rss=$(rss_mb "$pid"); nthreads=$(threads "$pid"); start_ms=$served_ms
  "$restart"
  printf '@@TABLE %-12s %4d %16d %18d %10s %8d %18s %18s\n' "$label" "$N" "$start_ms" "$served_ms" "$rss" "$nthreads" \
    "$(rate "$f0" "$f1" 10 "$f0_ids" "$f1_ids")" "$(rate "$a" "$b" "$SECONDS_IDLE" "$a_ids" "$b_ids")"
}

echo "@@TABLE # $N idle LUNs per runner; start-to-serving = runner start (the boot's first, cold) until it holds every /dev/uioN; restart-to-serving = the same after a stop, on the same exported devices (warm); wake-ups in the first 10 s after the last read, and in ${SECONDS_IDLE} s after ${SETTLE} s of quiet"
echo "@@TABLE # kernel=$(uname -r) cpus=$(nproc) node=$(node -v); '-': threads started or ended in the window, so the count is not comparable"
printf '@@TABLE %-12s %4s %16s %18s %10s %8s %18s %18s\n' runner luns "start-to-serve ms" "restart-to-serve ms" "RSS MB" threads "wake-ups/s 0-10s" "wake-ups/s idle"

uios=()
for ((i = 0; i < N; i++)); do
  truncate -s $SIZE $S/idle$i.img
  tcmu_create idle$i file/$S/idle$i.img $SIZE nl_reply_supported=-1 >/dev/null || fail "device $i"
  uios+=("$(uio_of idle$i)")
done
: >"$RUNNER_LOG"
t0=$(now_ms)
start_tcmu_ts
wait_serving tcmu-ts "$RUNNER_PID"
measure tcmu-ts "$RUNNER_PID" idle 41 restart_tcmu_ts
teardown_all; runner_stop

if [ "$reference" = tcmu-runner ]; then
  uios=()
  for ((i = 0; i < N; i++)); do
    tcmu_create tridle$i qcow/$S/idle$i.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device $i"
    uios+=("$(uio_of tridle$i)")
  done
  t0=$(now_ms)
  tr_start
  wait_serving tcmu-runner "$TR_PID"
  measure tcmu-runner "$TR_PID" tridle 51 restart_tcmu_runner
  teardown_all; tr_stop
fi
