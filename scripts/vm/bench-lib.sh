# Guest-side fio benchmarking helpers (bash, sourced after guest-lib.sh).
# Emulation (TCG) makes absolute numbers drift between boots, so LUNs are
# always compared inside one boot, interleaved A B, B A, ... and read as ratios.
# Output lines: @@BENCH job=<job> lun=<label> round=<n> iops=<x> mbps=<y>
#   cpu=<guest us/IO> [dcpu=<the serving daemon's own us/IO>]

BENCH_RUNTIME=${BENCH_RUNTIME:-10}   # seconds per fio run
BENCH_ROUNDS=${BENCH_ROUNDS:-4}      # rounds per job (A B, then B A, ...)
BENCH_SIZE=${BENCH_SIZE:-256M}       # region of each LUN the jobs touch
BENCH_JOBS=${BENCH_JOBS:-"randread4k randwrite4k seqread1m seqwrite1m"}
BENCH_WARMUP=${BENCH_WARMUP:-3}     # seconds of untimed warm-up per LUN and pattern (0: none)
# Extra fio options for the data every write carries (prefill, warm-up, jobs);
# fio's default is incompressible random bytes. The compressed-LUN bench sets
# e.g. "--buffer_compress_percentage=60 --refill_buffers".
BENCH_FIO_DATA=${BENCH_FIO_DATA:-}

_bench_args() {
  case "$1" in
    randread4k)  echo "--rw=randread --bs=4k --iodepth=16" ;;
    randwrite4k) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
    seqread1m)   echo "--rw=read --bs=1M --iodepth=8" ;;
    seqwrite1m)  echo "--rw=write --bs=1M --iodepth=8" ;;
    # issue 22's second table (against upstream tcmu-runner's file handler) runs 1 MiB at qd4
    seqread1m_qd4)  echo "--rw=read --bs=1M --iodepth=4" ;;
    seqwrite1m_qd4) echo "--rw=write --bs=1M --iodepth=4" ;;
    # one small sequential reader (dd-like): compressed LUNs' cache of inflated clusters
    seqread4k_qd1)  echo "--rw=read --bs=4k --iodepth=1" ;;
    *) return 1 ;;
  esac
}

# bench_prefill DEV: write the benchmarked region once, so reads hit data
# rather than holes in the backing file.
bench_prefill() {
  # shellcheck disable=SC2086
  fio --name=prefill --eta=never --filename="$1" --rw=write --bs=1M --iodepth=8 --ioengine=libaio \
      --direct=1 --size="$BENCH_SIZE" $BENCH_FIO_DATA --output=/dev/null
}

# bench_warmup DEV...: short untimed random and sequential reads and writes on
# every LUN before anything is measured. A freshly started runner's V8 takes
# several seconds under TCG to compile its hot path (the first timed job on a
# cold runner measured ~0.3x of the same job a minute later); every LUN,
# the in-kernel reference included, gets the same warm-up. 1 MiB reads and
# writes take other paths through the runner (large reads copied within a
# budget, large writes through io_uring workers) whose code V8 compiles
# only once they run, so they are warmed up too (the prefill runs 1 MiB
# writes, but only a few hundred).
bench_warmup() {
  [ "${BENCH_WARMUP:-0}" != 0 ] || return 0
  local dev rw
  for dev in "$@"; do
    for rw in randread:4k randwrite:4k read:4k write:4k read:1M write:1M; do
      # shellcheck disable=SC2086
      fio --name=warmup --eta=never --filename="$dev" --rw=${rw%:*} --bs=${rw#*:} --iodepth=16 --ioengine=libaio \
          --direct=1 --size="$BENCH_SIZE" $BENCH_FIO_DATA --time_based --runtime="$BENCH_WARMUP" --output=/dev/null || return 1
    done
  done
}

# bench_prepare LABEL DEV [LABEL DEV ...]: prefill and warm up every LUN, in
# order; a LABEL listed in BENCH_PREFILLED (space-separated: another LUN
# over the same backing) is only warmed up. Stops the bench with the
# script's `fail` on the first error.
bench_prepare() {
  while [ $# -ge 2 ]; do
    case " ${BENCH_PREFILLED:-} " in
      *" $1 "*) ;;
      *) bench_prefill "$2" || fail "prefill $1" ;;
    esac
    bench_warmup "$2" || fail "warm-up $1"
    shift 2
  done
}

# bench_affinity: BENCH_COMPLETION_AFFINITY (current, the default, or
# submitter) checked, and `affinity` set to the value LIO's
# cmd_completion_affinity takes for it (-2, -1); anything else stops the
# bench with the script's `fail`.
bench_affinity() {
  : "${BENCH_COMPLETION_AFFINITY:=current}"
  case "$BENCH_COMPLETION_AFFINITY" in
    current) affinity=-2 ;;
    submitter) affinity=-1 ;;
    *) fail "BENCH_COMPLETION_AFFINITY must be current or submitter, not '$BENCH_COMPLETION_AFFINITY'" ;;
  esac
}

# The guest's clocksource, for the BENCH-INFO line: under TCG it is the
# emulated HPET unless the boot passed clocksource=tsc tsc=reliable
# (TCMU_VM_APPEND), and with HPET every clock read is a system call that
# costs runners which read clocks per event-loop turn (libuv) the most.
bench_clocksource() { cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown; }

# bench_cpu_stat -> "busy total": jiffies of the guest's CPUs summed from
# /proc/stat (busy = user nice system irq softirq steal; total adds idle iowait).
bench_cpu_stat() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }

# bench_daemon_cpu PID -> clock ticks of CPU the daemon used (user + system,
# all its threads, exited ones included: io-wq workers come and go); 0 when
# PID is empty or gone.
bench_daemon_cpu() {
  local ticks=
  [ -z "$1" ] || ticks=$(_bench_stat_ticks "/proc/$1/stat")
  echo "${ticks:-0}"
}
# _bench_stat_ticks FILE: user + system clock ticks from a /proc stat file
# (a process's or one thread's), counted after the ")" that ends the name,
# which may hold spaces.
_bench_stat_ticks() { sed 's/^.*) //' "$1" 2>/dev/null | awk '{ print $12 + $13 }'; }

# bench_pid_of LABEL: the pid of the daemon serving the LUN named LABEL in
# bench_compare (none for the in-kernel references).
bench_pid_of() {
  case "$1" in
    tcmu-runner) echo "${TR_PID:-}" ;;
    base) echo "${BASE_PID:-}" ;;
    tcmu-ts*) echo "${RUNNER_PID:-}" ;;
  esac
}

# bench_job JOB DEV [DEV...] -> "iops mbps cpu_us": one fio job per DEV, all
# at once, reported as one group (terse v3: read bw/iops are fields 7/8,
# write bw/iops 48/49; bw in KiB/s). cpu_us is the whole guest's CPU time
# (the runner, the kernel and fio itself) per I/O, from /proc/stat sampled
# inside the run's steady part (from 2 s after fio starts, past its start-up
# and the 1 s ramp, to 0.5 s before its timed part ends); 0 when the run is
# too short for that window. With BENCH_JOB_PID (the daemon serving DEV), a
# fourth field from the same window: that daemon's own CPU per I/O, all its
# threads (bench_daemon_cpu), in microseconds.
bench_job() {
  local job="$1" args dev jobs=() cpu_file s0 s1 d0 d1 sampler=
  args=$(_bench_args "$job") || { echo "bench_job: unknown job $job" >&2; return 1; }
  shift
  for dev in "$@"; do jobs+=(--name="$job" --filename="$dev"); done
  cpu_file=$(mktemp)
  if [ "${BENCH_RUNTIME%%.*}" -ge 3 ]; then
    ( sleep 2; s0=$(bench_cpu_stat); d0=$(bench_daemon_cpu "${BENCH_JOB_PID:-}")
      sleep "$(( BENCH_RUNTIME - 2 )).5"; s1=$(bench_cpu_stat); d1=$(bench_daemon_cpu "${BENCH_JOB_PID:-}")
      echo "$s0 $s1 $d0 $d1" > "$cpu_file" ) &
    sampler=$!
  fi
  # shellcheck disable=SC2086
  fio --eta=never $args --ioengine=libaio --direct=1 --size="$BENCH_SIZE" \
      --time_based --runtime="$BENCH_RUNTIME" --ramp_time=1 --randrepeat=0 --group_reporting $BENCH_FIO_DATA \
      --output-format=terse --terse-version=3 "${jobs[@]}" 2>/dev/null > "$cpu_file.fio"
  [ -z "$sampler" ] || wait "$sampler"
  awk -F';' -v ncpu="$(nproc)" -v hz="$(getconf CLK_TCK)" -v cpu="$(cat "$cpu_file")" -v daemon="${BENCH_JOB_PID:-}" '
    { r = $8 + $49; b = ($7 + $48) / 1024 }
    END { split(cpu, c, " "); us = 0; dus = 0
      # c: busy and total jiffies at the start (1, 2) and end (3, 4) of the
      # window; the daemon ticks at the start (5) and end (6).
      if (c[4] > c[2] && r > 0) {
        secs = (c[4] - c[2]) / ncpu / hz
        us = (c[3] - c[1]) / (c[4] - c[2]) * ncpu * 1e6 / r
        if (c[6] > 0) dus = (c[6] - c[5]) / hz / secs * 1e6 / r
      }
      printf "%.0f %.1f %.1f", r, b, us
      if (daemon != "") printf " %.1f", dus
      printf "\n" }' "$cpu_file.fio"
  rm -f "$cpu_file" "$cpu_file.fio"
}

# bench_compare LABEL_1 DEV_1 LABEL_2 DEV_2 [LABEL_3 DEV_3 ...]: every job,
# each round in a rotated order (1 2 3, 2 3 1, 3 1 2, ...; for two LUNs
# A B, B A, A B ...) so that a drift in the machine's speed favours no LUN.
bench_compare() {
  local labels=() devs=() n job round i k out
  while [ $# -ge 2 ]; do labels+=("$1"); devs+=("$2"); shift 2; done
  n=${#labels[@]}
  for job in $BENCH_JOBS; do
    for round in $(seq 1 "$BENCH_ROUNDS"); do
      for i in $(seq 0 $((n - 1))); do
        k=$(( (round - 1 + i) % n ))
        out=$(BENCH_JOB_PID=$(bench_pid_of "${labels[$k]}") bench_job "$job" "${devs[$k]}") || out="0 0 0"
        set -- $out
        echo "@@BENCH job=$job lun=${labels[$k]} round=$round iops=$1 mbps=$2 cpu=${3:-0}${4:+ dcpu=$4}"
      done
    done
  done
}

# prof_lines N TAG PERF-REPORT-ARGS...: the top N rows of one report of
# bench_profile's samples, as "@@PROF JOB LABEL TAG" lines (reads its
# locals p, job and label).
prof_lines() {
  local n=$1 tag=$2
  shift 2
  perf report -i "$p" --stdio --no-children "$@" 2>/dev/null | grep -E '^ +[0-9.]+%' | head -"$n" | sed "s/^/@@PROF $job $label $tag /"
}
# bench_profile JOB LABEL DEV: run JOB on DEV (bench_job) while `perf record
# -a` samples every CPU from 2 s in (cpu-clock: TCG has no hardware
# counters); prints the result and the busiest thread names, the shares
# of each vCPU and its busiest threads, symbols and thread+symbol pairs, as
# shares of all samples: "@@PROF JOB LABEL ..." lines;
# then the runner daemons' own samples (tcmu-ts's $RUNNER_PID and, when
# running, tcmu-runner's $TR_PID; BENCH_PROFILE_PIDS overrides) by thread and
# library ("runner-dso"), by thread id ("runner-tid"), each daemon's main
# thread by library and symbol ("main-sym PID"), by thread, library and
# symbol, and the threads named in BENCH_PROFILE_COMMS (default node) by
# library and symbol.
# Needs BENCH_RUNTIME >= 4, perf, kptr_restrict 0 (bench_profile_setup).
bench_profile() {
  local job="$1" label="$2" dev="$3" p=/tmp/perf.data prof out
  local pids=${BENCH_PROFILE_PIDS:-${RUNNER_PID:-}${TR_PID:+ $TR_PID}} comm
  local engine0
  engine0=$(bench_engine_counts)
  bench_thread_counts "$pids" > /tmp/threads.0
  ( sleep 2; perf record -q -a -e cpu-clock -F 499 -o $p -- sleep "$(( BENCH_RUNTIME - 3 ))" >/dev/null 2>&1 ) &
  prof=$!
  out=$(bench_job "$job" "$dev") || out="0 0 0"
  wait $prof
  bench_thread_counts "$pids" > /tmp/threads.1
  set -- $out
  echo "@@PROF $job $label iops=$1 mbps=$2 cpu_us=$3"
  bench_thread_lines "$job" "$label" "$1" /tmp/threads.0 /tmp/threads.1
  bench_engine_line "$job" "$label" "$engine0" "$(bench_engine_counts)"
  prof_lines 12 comm --sort comm
  # Per vCPU: whether one of them (the initiator's) is the one that is full.
  prof_lines 4 cpu --sort cpu
  prof_lines 16 cpu+comm --sort cpu,comm
  prof_lines 30 sym --sort sym
  prof_lines 30 comm+sym --sort comm,sym
  # The runners' own processes, by thread and library: where a runner's CPU goes.
  pids=${pids// /,} # perf takes a comma-separated list
  if [ -n "$pids" ]; then
    prof_lines 20 runner-dso --pid "$pids" --sort comm,dso
    # Per thread id (perf's "pid" key is the thread's): threads share names
    # (node's main thread, libuv's pool and V8's helpers are all "node"), and
    # a process's main thread has tid = pid.
    prof_lines 24 runner-tid --pid "$pids" --sort pid
    local pid
    for pid in ${pids//,/ }; do prof_lines 40 "main-sym $pid" --tid "$pid" --sort dso,sym; done
    prof_lines 40 runner-sym --pid "$pids" --sort comm,dso,sym
    for comm in ${BENCH_PROFILE_COMMS:-node}; do
      prof_lines 50 "thread-sym $comm" --pid "$pids" --comms "$comm" --sort dso,sym
    done
  fi
  rm -f $p
  if [ "${BENCH_PROFILE_SYSCALLS:-0}" = 1 ] && [ -n "$pids" ]; then bench_syscalls "$job" "$label" "$dev" "$pids"; fi
  if [ "${BENCH_PROFILE_CALLGRAPH:-0}" = 1 ] && [ -n "$pids" ]; then bench_callgraph "$job" "$label" "$dev" "$pids"; fi
}
# bench_engine_counts [LUN]: the ring engine counters of the tcmu-ts daemon
# (`tcmu-ts status --json`; its control socket BENCH_STATUS_SOCKET, default
# the daemon's default), of LUN (e.g. ts) or summed over all its LUNs:
# "commands iovecs kicks batches completedElsewhere handedOver"; zeros when it does not answer.
bench_engine_counts() {
  node "$TCMU_TS_ROOT/dist/src/cli/main.js" status --json ${BENCH_STATUS_SOCKET:+--socket "$BENCH_STATUS_SOCKET"} 2>/dev/null | node -e '
    let luns = [];
    try { luns = JSON.parse(require("fs").readFileSync(0, "utf8")).luns; } catch {}
    const t = [0, 0, 0, 0, 0, 0];
    for (const l of luns) {
      if (process.argv[1] && l.id !== "user_1/" + process.argv[1]) continue;
      const s = l.stats ?? {};
      [s.commands, s.iovecs, s.kicks, s.batches, s.completedElsewhere, s.handedOver].forEach((v, i) => (t[i] += v ?? 0));
    }
    console.log(t.join(" "));' "${1:-}"
}
# bench_engine_line JOB LABEL BEFORE AFTER: "@@PROF JOB LABEL engine ..."
# from two bench_engine_counts: per command, the ring batches, kicks, the
# share completed by another thread (in the ring, rbd) and the share that
# thread handed over to a batch holding the ring.
bench_engine_line() {
  local c0 v0 k0 b0 e0 h0 c1 v1 k1 b1 e1 h1
  read -r c0 v0 k0 b0 e0 h0 <<< "$3"
  read -r c1 v1 k1 b1 e1 h1 <<< "$4"
  [ "$(( c1 - c0 ))" -gt 0 ] || return 0
  awk -v job="$1" -v l="$2" -v n="$(( c1 - c0 ))" -v b="$(( b1 - b0 ))" -v k="$(( k1 - k0 ))" -v e="$(( e1 - e0 ))" -v h="$(( ${h1:-0} - ${h0:-0} ))" \
    'BEGIN { printf "@@PROF %s %s engine commands=%d batches/cmd=%.3f kicks/cmd=%.3f completed_elsewhere=%.3f handed_over=%.3f\n", job, l, n, b / n, k / n, e / n, h / n }'
}
# bench_thread_counts PIDS: one line per process and thread name (threads of
# one name summed): "PID:NAME voluntary involuntary cpu_ticks", from
# /proc/PID/task/*/{status,stat}, and "PID:all-threads 0 0 cpu_ticks" from
# /proc/PID/stat (which keeps the CPU of threads that have exited).
# Voluntary context switches are the times a thread slept and was woken (for
# a ring thread: its wake-ups), involuntary ones the times it was preempted.
bench_thread_counts() {
  local pid t
  for pid in ${1//,/ }; do
    echo "$pid:all-threads 0 0 $(bench_daemon_cpu "$pid")"
    for t in /proc/"$pid"/task/*; do
      # The main thread apart: node's helper threads share its name.
      printf '%s:%s%s %s %s\n' "$pid" "$([ "${t##*/}" = "$pid" ] && echo main-)" "$(tr -c 'A-Za-z0-9.\n-' _ < "$t/comm")" \
        "$(awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v + 0, n + 0 }' "$t/status" 2>/dev/null)" \
        "$(_bench_stat_ticks "$t/stat")"
    done
  done | awk 'NF == 4 { v[$1] += $2; n[$1] += $3; c[$1] += $4 } END { for (k in v) print k, v[k], n[k], c[k] }' | sort
}
# bench_thread_lines JOB LABEL IOPS BEFORE AFTER: "@@PROF JOB LABEL threads
# PID:NAME ..." lines, per I/O over the whole fio run (ramp included, so
# approximate): wake-ups (voluntary switches), preemptions (involuntary) and
# CPU in microseconds. Names whose counts fell (threads that came and went,
# like io_uring's workers) are left out: their CPU is in all-threads.
bench_thread_lines() {
  local ios
  ios=$(awk -v r="$3" -v t="$BENCH_RUNTIME" 'BEGIN { print r * (t + 1) }')
  join "$4" "$5" | awk -v job="$1" -v l="$2" -v ios="$ios" -v hz="$(getconf CLK_TCK)" '
    ios > 0 && $7 > $4 && $5 >= $2 && $6 >= $3 { printf "@@PROF %s %s threads %-24s wakeups/io=%.2f preempted/io=%.2f cpu_us/io=%.0f\n", job, l, $1, ($5 - $2) / ios, ($6 - $3) / ios, ($7 - $4) / hz * 1e6 / ios }'
  rm -f "$4" "$5"
}
# bench_traced_run JOB LABEL DEV PIDS KIND TRACER REPORTER: run JOB on DEV
# again while, from 2 s in for BENCH_RUNTIME - 3 s, `TRACER TID SECONDS`
# traces the thread that serves each daemon's ring (bench_ring_thread); then
# "@@PROF JOB LABEL KIND-run iops=..." and, per daemon, REPORTER TID's lines
# as "@@PROF JOB LABEL KIND PID:TID:NAME ...". A separate run: tracing slows
# the daemons, so its IOPS are not the profile's.
bench_traced_run() {
  local job="$1" label="$2" dev="$3" pids="$4" kind="$5" tracer="$6" reporter="$7" tracers=() out pid tid
  local -A ring_tid # pid -> the thread traced, looked up once
  for pid in ${pids//,/ }; do
    tid=$(bench_ring_thread "$pid")
    ring_tid[$pid]=$tid
    ( sleep 2; "$tracer" "$tid" "$(( BENCH_RUNTIME - 3 ))" >"/tmp/tracer.$tid" 2>&1 ) &
    tracers+=($!)
  done
  out=$(bench_job "$job" "$dev") || out="0 0 0"
  wait "${tracers[@]}"
  set -- $out
  echo "@@PROF $job $label $kind-run iops=$1 window_s=$(( BENCH_RUNTIME - 3 ))"
  for pid in ${pids//,/ }; do
    tid=${ring_tid[$pid]}
    # A tracer that failed, or a thread that never ran, gives no lines: say so, with what the tracer printed.
    { "$reporter" "$tid" | grep . || echo "nothing traced: $(tail -c 300 "/tmp/tracer.$tid" | tr '\n' ' ')"; } \
      | sed "s/^/@@PROF $job $label $kind $pid:$tid:$(cat /proc/$pid/task/$tid/comm 2>/dev/null) /"
    rm -f "/tmp/tracer.$tid"
  done
}
# bench_syscalls JOB LABEL DEV PIDS: the ring threads' system calls (`strace
# -c`), the run's IOPS first, to turn counts into calls per I/O.
bench_syscalls() { bench_traced_run "$1" "$2" "$3" "$4" syscalls _bench_strace_thread _bench_strace_report; }
_bench_strace_thread() { timeout -s INT "$2" strace -c -q -p "$1" -o "/tmp/strace.$1"; }
_bench_strace_report() { grep -E '^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+' "/tmp/strace.$1"; rm -f "/tmp/strace.$1"; }
# bench_callgraph JOB LABEL DEV PIDS: the ring threads' call graphs (`perf
# record -g`) as inclusive shares, top 70 by `perf report --children`:
# which part of an event-loop turn costs what.
bench_callgraph() { bench_traced_run "$1" "$2" "$3" "$4" callgraph _bench_perf_thread _bench_perf_report; }
_bench_perf_thread() { perf record -q -g -e cpu-clock -F 999 --tid "$1" -o "/tmp/cg.$1" -- sleep "$2"; }
_bench_perf_report() {
  perf report -i "/tmp/cg.$1" --stdio --children --sort sym 2>>"/tmp/tracer.$1" | grep -E '^ +[0-9.]+%' | head -70
  rm -f "/tmp/cg.$1"
}
# bench_ring_thread PID: the thread that serves a daemon's rings: tcmu-runner's
# cmdproc-* thread, else the process's main thread (tcmu-ts's event loop).
bench_ring_thread() {
  local t
  for t in /proc/$1/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in cmdproc*) echo "${t##*/}"; return ;; esac
  done
  echo "$1"
}
# bench_profile_luns LABEL DEV [LABEL DEV ...]: bench_profile for every job
# of BENCH_PROFILE_JOBS on every LUN, in order.
bench_profile_luns() {
  local job i args=("$@")
  for job in $BENCH_PROFILE_JOBS; do
    for ((i = 0; i < ${#args[@]}; i += 2)); do bench_profile "$job" "${args[$i]}" "${args[$((i + 1))]}"; done
  done
}
bench_profile_setup() {
  command -v perf >/dev/null || fail "perf is not installed (Debian package linux-perf)"
  echo 0 > /proc/sys/kernel/kptr_restrict
  echo -1 > /proc/sys/kernel/perf_event_paranoid
}

# bench_tcmu_luns WWN NEXUS AFFINITY: the LUN set the file benches compare.
# On the default tcm_loop target the in-kernel fileio backstore ("fileio",
# buffered unless BENCH_FILEIO_OPTS says otherwise); on a second target
# (WWN, NEXUS; cmd_completion_affinity AFFINITY, -1 or -2) a tcmu-ts `file`
# LUN ("tcmu-ts") and, when $reference is tcmu-runner, Debian tcmu-runner's
# ("tcmu-runner", its qcow handler serving a raw file) or, with
# BENCH_TCMU_RUNNER_DIR, that build's `file` handler. Each over a
# $SIZE-byte sparse file in $S. Both TCMU LUNs take up to BENCH_MAX_SECTORS
# blocks per command (TCMU_MAX_SECTORS; default 2048, 1 MiB: what `tcmu-ts
# lun create` makes for 512-byte blocks). Starts both runners, sets
# luns=(LABEL DEV ...), and leaves tcmu_target_export for more LUNs on the
# second target.
bench_tcmu_luns() {
  TCMU_WWN=$1 TCMU_NEXUS=$2
  export TCMU_MAX_SECTORS=${BENCH_MAX_SECTORS:-2048}
  tcmu_target_export() { LOOP_WWN=$TCMU_WWN LOOP_NEXUS=$TCMU_NEXUS loop_export "$@"; }
  # The target exists before its first LUN link, so even the kernel's scan completes as set.
  mkdir -p "$CFG/loopback/$TCMU_WWN/tpgt_1" && echo "$3" > "$CFG/loopback/$TCMU_WWN/param/cmd_completion_affinity" \
    || fail "cannot set cmd_completion_affinity=$3 on the TCMU target"
  truncate -s "$SIZE" "$S/ref.img" "$S/tcmu.img"
  fileio_create ref "$S/ref.img" "$SIZE" "${BENCH_FILEIO_OPTS-fd_buffered_io=1}" || fail "fileio"
  # Upstream tcmu-runner answers for subtype `file` too, and at its start it
  # blocks and resets the ring of every `file` device it finds, served or
  # not. So, against it, tcmu-ts serves its own file handler under another
  # subtype (the same module, registered by the config as `tsfile`), and
  # neither runner ever touches the other's device.
  local subtype=file serve_args=(--subtypes file)
  if [ -n "${BENCH_TCMU_RUNNER_DIR:-}" ]; then
    subtype=tsfile
    printf '[daemon.handlers]\ntsfile = "%s"\n' "$TCMU_TS_ROOT/dist/handlers/file/index.js" > /run/bench-tsfile.toml
    serve_args=(--config /run/bench-tsfile.toml --subtypes tsfile)
  fi
  tcmu_create tcmu "$subtype/$S/tcmu.img" "$SIZE" nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device"
  RUNNER_EXPECT=$(uio_of tcmu) runner_start "${serve_args[@]}" || fail "runner did not start"
  luns=(fileio "$(loop_export ref 0)" tcmu-ts "$(tcmu_target_export tcmu 0)")
  if [ "$reference" = tcmu-runner ]; then
    truncate -s "$SIZE" "$S/reference.img"
    tcmu_create reference "$(tr_subtype)/$S/reference.img" "$SIZE" nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device"
    tr_start
    wait_for 60 holds_uio "$TR_PID" "$(uio_of reference)" || fail "tcmu-runner did not open its device"
    luns+=(tcmu-runner "$(tcmu_target_export reference 1)")
  fi
}

# -- Debian's tcmu-runner, the reference runner ---------------------------------
# tcmu-runner looks target_core_user up in /lib/modules/$(uname -r) (libkmod)
# and exits ("couldn't load module") when it finds nothing, even if the module
# is loaded. The guest's modules live in $TCMU_VM_KDIR and the root is
# read-only, so tcmu-runner gets a private mount namespace in which /usr/lib
# is an overlay (upper on tmpfs) with a `modules` link to the cached tree.
# Its log goes to $TR_LOG, its console to $TR_OUT.
# BENCH_TCMU_RUNNER_DIR (a build from scripts/vm/build-tcmu-runner.sh, e.g.
# upstream 1.6.2) runs that build and its handlers instead of Debian's.
TR_LOG=/run/tcmu-runner.log
TR_OUT=${TR_OUT:-/run/tcmu-runner.out}
TR_PID=
tr_start() {
  local o=/run/tcmu-runner-ovl
  if [ ! -d $o/upper ]; then
    mkdir -p $o/upper $o/work && ln -s "$TCMU_VM_KDIR/lib/modules" $o/upper/modules
    modprobe -d "$TCMU_VM_KDIR" overlay 2>/dev/null
  fi
  unshare -m --propagation private sh -c \
    "mount -t overlay overlay -o lowerdir=/usr/lib,upperdir=$o/upper,workdir=$o/work /usr/lib && exec $(tr_command) --tcmu-log-dir /run" \
    >>"$TR_OUT" 2>&1 &
  TR_PID=$!   # unshare and sh exec: this becomes tcmu-runner's pid
}
tr_stop() {
  [ -n "$TR_PID" ] || return 0
  local n=0
  kill -TERM "$TR_PID" 2>/dev/null
  while kill -0 "$TR_PID" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
  kill -0 "$TR_PID" 2>/dev/null && { echo "bench: tcmu-runner ignored SIGTERM, killing" >&2; kill -KILL "$TR_PID"; }
  wait "$TR_PID" 2>/dev/null; TR_PID=
}
# tr_command: the reference runner's command line, without the log option.
tr_command() {
  if [ -n "${BENCH_TCMU_RUNNER_DIR:-}" ]; then
    printf '%q --handler-path %q' "$BENCH_TCMU_RUNNER_DIR/tcmu-runner" "$BENCH_TCMU_RUNNER_DIR"
  else
    echo tcmu-runner
  fi
}
# tr_subtype: the reference runner's handler for a raw file: upstream's
# `file`, or Debian's `qcow` (which serves a file that is not qcow as raw).
tr_subtype() { if [ -n "${BENCH_TCMU_RUNNER_DIR:-}" ]; then echo file; else echo qcow; fi; }
# tr_version: "tcmu-runner_1.5.4", for the bench's info line.
tr_version() { eval "$(tr_command) -V" 2>&1 | head -1 | tr ' ' '_'; }
# holds_uio PID UIO: PID has /dev/UIO open
holds_uio() { ls -l /proc/"$1"/fd 2>/dev/null | grep -q "/dev/$2\$"; }

# The failure exit of a bench comparing tcmu-ts with tcmu-runner: tear down
# everything, show both runners' logs. Scripts call it as `fail`.
bench_fail() {
  echo "bench: $*" >&2
  teardown_all; runner_stop; tr_stop
  dump_log runner "$RUNNER_LOG"; dump_log tcmu-runner "$TR_LOG" 30; dump_log tcmu-runner-out "$TR_OUT" 30
  exit 1
}

# BENCH_REFERENCE: tcmu-runner (default; must be installed) or none. Sets $reference.
bench_reference() {
  reference=${BENCH_REFERENCE:-tcmu-runner}
  case "$reference" in
    tcmu-runner)
      if [ -n "${BENCH_TCMU_RUNNER_DIR:-}" ]; then
        [ -x "$BENCH_TCMU_RUNNER_DIR/tcmu-runner" ] && [ -f "$BENCH_TCMU_RUNNER_DIR/handler_file.so" ] \
          || bench_fail "BENCH_TCMU_RUNNER_DIR=$BENCH_TCMU_RUNNER_DIR has no tcmu-runner and handler_file.so (scripts/vm/build-tcmu-runner.sh)"
      else
        command -v tcmu-runner >/dev/null || bench_fail "tcmu-runner not installed (BENCH_REFERENCE=none runs without it)"
      fi ;;
    none) ;;
    *) bench_fail "BENCH_REFERENCE must be tcmu-runner or none, not '$reference'" ;;
  esac
}
