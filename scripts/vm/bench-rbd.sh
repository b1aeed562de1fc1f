# Guest scenario for `scripts/bench rbd`: RBD images on one single-node
# cluster (scripts/ceph.sh, state on the scratch disk), one image per LUN,
# same boot, same tcm_loop target, fio jobs in a rotated order (bench-lib.sh):
#   krbd         the kernel's rbd client (/dev/rbdN) under LIO's block
#                (iblock) backstore: the in-kernel reference
#   tcmu-ts      tcmu-ts's rbd handler (librbd aio), registered as the user
#                handler `tsrbd` so that it and tcmu-runner never claim each
#                other's devices; default cache=none (librbd's cache off)
#   tcmu-ts-wt   the same with cache=writethrough (librbd's cache on, no
#                dirty data: tcmu-runner's effective setting)
#   tcmu-runner  Debian's tcmu-runner 1.5.4 with its rbd handler
#                (BENCH_REFERENCE=none leaves it out)
#   base         only with BENCH_BASE (a built checkout, e.g. a git worktree
#                of an older commit): in place of tcmu-ts-wt, that tree's
#                daemon and rbd handler (cache=none), registered as the user
#                handler `rbdbase`: a same-boot A/B of a change to the rbd
#                path (`scripts/bench rbd-ab`)
# BENCH_RBD_OPTS / BENCH_BASE_RBD_OPTS: dev_config options appended to the
# tcmu-ts / base LUN (";osd_op_timeout=0"): an A/B of a setting, with
# BENCH_BASE this same checkout.
# tcmu-runner runs with librbd's default cache: rbd_cache in writethrough
# until a flush, and a LUN without a write cache never gets one. Every LUN
# here is write-through (WCE=0).
# Output: @@BENCH lines for bench-table.sh; with BENCH_PROFILE_JOBS set
# (`scripts/bench rbd-profile`), a CPU profile of those jobs on each LUN
# instead (bench_profile: @@PROF lines).
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-4}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
fail() { [ -z "${BASE_PID:-}" ] || { kill "$BASE_PID" 2>/dev/null; dump_log base /run/base.log; }; bench_fail "$@"; }
bench_reference
[ -z "${BENCH_PROFILE_JOBS:-}" ] || bench_profile_setup
S=/mnt/scratch
CEPH_DIR=$S/ceph
export CEPH_CONF=$CEPH_DIR/ceph.conf
SIZE=$((1 << 30))

ceph_start $CEPH_DIR 6G || fail "ceph.sh start"
for img in b-ts b-tswt b-runner b-krbd b-base; do rbd create rbd/$img --size 1G || fail "rbd create $img"; done

# krbd under LIO's iblock backstore
modprobe -d "$TCMU_VM_KDIR" rbd 2>/dev/null
# noudev: the guest runs no udevd, and `rbd map` would wait for its event forever.
timeout 120 rbd map -o noudev rbd/b-krbd >/tmp/rbd-map.out 2>&1 || { dump_log rbd_map /tmp/rbd-map.out; fail "rbd map"; }
krbd_dev=
for d in /sys/bus/rbd/devices/*; do [ "$(cat $d/name 2>/dev/null)" = b-krbd ] && krbd_dev=/dev/rbd${d##*/}; done
wait_for 30 test -b "$krbd_dev" || fail "no block device for rbd/b-krbd (${krbd_dev:-none})"
d=$CFG/core/iblock_0/krbd
mkdir -p $d && echo "udev_path=$krbd_dev" > $d/control && echo tcmu-ts-ref-krbd > $d/wwn/vpd_unit_serial && echo 1 > $d/enable || fail "iblock over $krbd_dev"

export BENCH_STATUS_SOCKET=/run/tcmu-ts-bench.sock # bench_engine_counts
printf '[daemon]\ncontrol_socket = "/run/tcmu-ts-bench.sock"\n[daemon.handlers]\ntsrbd = "%s"\n' "$TCMU_TS_ROOT/dist/handlers/rbd/index.js" > /run/bench-rbd.toml
tcmu_create ts "tsrbd/rbd/b-ts;conf=$CEPH_CONF${BENCH_RBD_OPTS:-}" $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device"
if [ -n "${BENCH_BASE:-}" ]; then
  [ -f "$BENCH_BASE/dist/handlers/rbd/index.js" ] || fail "BENCH_BASE must be a built tcmu-ts checkout (dist/handlers/rbd/index.js), not '$BENCH_BASE'"
  tcmu_create base "rbdbase/rbd/b-base;conf=$CEPH_CONF${BENCH_BASE_RBD_OPTS:-}" $SIZE nl_reply_supported=-1 >/dev/null || fail "base device"
else
  tcmu_create tw "tsrbd/rbd/b-tswt;conf=$CEPH_CONF;cache=writethrough" $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts writethrough device"
fi
# Profiling: the daemon's JS too (V8's sampler, written when it stops; BENCH_CPU_PROF=0: not).
node_args=; [ -z "${BENCH_PROFILE_JOBS:-}" ] || [ "${BENCH_CPU_PROF:-1}" = 0 ] || node_args="--cpu-prof --cpu-prof-dir=/tmp/cpuprof"
expect="$(uio_of ts)"; [ -n "${BENCH_BASE:-}" ] || expect="$expect $(uio_of tw)"
RUNNER_NODE_ARGS=$node_args RUNNER_TIMEOUT=600 RUNNER_EXPECT="$expect" runner_start --config /run/bench-rbd.toml --subtypes tsrbd || fail "runner"
# Exported in LUN order: the first export makes the nexus, and a LUN
# linked before LUN 0 was never found by the scan.
luns=(krbd "$(loop_export krbd 0)" tcmu-ts "$(loop_export ts 1)")
if [ -n "${BENCH_BASE:-}" ]; then
  printf '[daemon]\ncontrol_socket = "/run/base.sock"\n[daemon.handlers]\nrbdbase = "%s"\n' "$BENCH_BASE/dist/handlers/rbd/index.js" > /run/base.toml
  node "$BENCH_BASE/dist/src/cli/main.js" serve --config /run/base.toml --subtypes rbdbase > /run/base.log 2>&1 &
  BASE_PID=$!
  wait_for 300 holds_uio "$BASE_PID" "$(uio_of base)" || fail "the base daemon did not open its device"
  luns+=(base "$(loop_export base 3)")
else
  luns+=(tcmu-ts-wt "$(loop_export tw 3)")
fi
if [ "$reference" = tcmu-runner ]; then
  tcmu_create tr "rbd/rbd/b-runner;conf=$CEPH_CONF" $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device"
  tr_start
  wait_for 300 holds_uio "$TR_PID" "$(uio_of tr)" || fail "tcmu-runner did not open its device"
  luns+=(tcmu-runner "$(loop_export tr 2)")
fi
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  [ -b "${luns[$i]}" ] || fail "a LUN has no block device (${luns[*]})"
done
base_info=; [ -z "${BENCH_BASE:-}" ] || base_info=" base=$(cd "$BENCH_BASE" && git rev-parse --short HEAD 2>/dev/null || echo "$BENCH_BASE")"
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) clocksource=$(bench_clocksource) cluster=1-osd-bluestore-on-scratch reference=$reference reference_version=$(dpkg-query -W -f '${Package}_${Version}' tcmu-runner 2>/dev/null || echo none)$base_info"
bench_prepare "${luns[@]}"
if [ -n "${BENCH_PROFILE_JOBS:-}" ]; then
  bench_profile_luns "${luns[@]}"
else
  bench_compare "${luns[@]}"
fi
teardown_all
runner_stop
tr_stop
[ -z "${BASE_PID:-}" ] || { kill "$BASE_PID" 2>/dev/null; wait "$BASE_PID" 2>/dev/null; }
if [ -n "${BENCH_PROFILE_JOBS:-}" ]; then
  for f in /tmp/cpuprof/*.cpuprofile; do
    [ -f "$f" ] && node "$TCMU_TS_ROOT/scripts/vm/cpuprofile-top.mjs" "$f" 40 | sed 's/^/@@PROF js tcmu-ts /'
  done
fi
rbd unmap -o noudev "$krbd_dev"
bash "$TCMU_TS_ROOT/scripts/ceph.sh" stop $CEPH_DIR >/dev/null 2>&1
