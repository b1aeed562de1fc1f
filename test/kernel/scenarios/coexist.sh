# tcmu-ts next to Debian's tcmu-runner (issue 20, part 2). tcmu-runner starts
# first (it takes org.kernel.TCMUService1), then tcmu-ts with one config LUN
# (user:file). tcmu-runner gets a user:qcow device made by hand. Both LUNs go
# on one loopback target and each serves its own I/O; the data lands in each
# runner's own image. A user:file device made by hand WITHOUT
# nl_reply_supported=-1 shows the race tcmu-runner wins (it refuses devices of
# subtypes it lacks before tcmu-ts answers): the kernel drops it and tcmu-ts
# closes what it opened. Asserted in coexist.test.ts.
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"   # tr_start / tr_stop: tcmu-runner in the guest
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch; A=$S/allowed; MiB=1048576
mkdir -p $A /run/dbus
truncate -s $((64 * MiB)) $A/f0.img $A/p0.img
truncate -s $((64 * MiB)) $S/c0.img   # tcmu-runner's qcow handler serves raw images too (as in scripts/bench)
cat > $S/tcmu-ts.toml <<TOML
[daemon]
allowed_dirs = ["$A"]

[lun.f0]
backstore = "file"
path = "$A/f0.img"
size = "64M"
TOML
cat > $S/system-bus.conf <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/system.conf</include>
  <include>$TCMU_TS_ROOT/scripts/systemd/tcmu-ts-dbus.conf</include>
</busconfig>
XML
DBUS_PID=
finish() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  tr_stop
  [ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null
  dump_log runner "$RUNNER_LOG" 20
  dump_log tcmu-runner "$TR_LOG" 30
  dmesg | grep -i 'tcmu\|netlink\|genl' | tail -20 | sed 's/^/@@LOG kmsg /'
}
name_is() { [ "$(name_pid)" = "$1" ]; }
name_pid() { dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetConnectionUnixProcessID string:org.kernel.TCMUService1 2>/dev/null | awk '/uint32/ {print $2}'; }
holds() { ls -l /proc/"$1"/fd 2>/dev/null | grep -q "/dev/$2\$" && echo yes || echo no; }

if dbus-daemon --config-file=$S/system-bus.conf --fork --print-pid=1 > $S/dbus.pid 2>$S/dbus.err \
   && wait_for 20 test -S /run/dbus/system_bus_socket; then DBUS_PID=$(cat $S/dbus.pid); result dbus ok
else result dbus fail; dump_log dbus $S/dbus.err; exit 1; fi

# -- tcmu-runner first: it owns the D-Bus name ---------------------------------------
tr_start
if wait_for 30 name_is "$TR_PID"; then result tr_name ok; else result tr_name "fail owner=$(name_pid) tcmu-runner=$TR_PID"; fi

# -- tcmu-ts second: sees tcmu-runner, leaves the name alone, provisions f0 -----------
node "$TCMU_TS_ROOT/dist/src/cli/main.js" serve --config $S/tcmu-ts.toml > $RUNNER_LOG 2>&1 &
RUNNER_PID=$!
if wait_for 60 grep -q 'tcmu-ts ready' $RUNNER_LOG; then result ts_ready ok; else result ts_ready fail; fi
result ts_saw_runner "$(grep '"level":40' $RUNNER_LOG | grep -c 'another TCMU runner is running')"
result ts_left_rbd "$(grep '"level":40' $RUNNER_LOG | grep -c 'user:rbd left to the other runner, which has that handler loaded')"
wait_for 30 grep -q 'no D-Bus service: serving without it' $RUNNER_LOG
result ts_dbus_reason "$(grep 'no D-Bus service: serving without it' $RUNNER_LOG | grep -c "owned by tcmu-runner (pid $TR_PID), offering .*user:qcow")"
result name_owner "$([ "$(name_pid)" = "$TR_PID" ] && echo tcmu-runner || echo "other:$(name_pid)")"
result f0_nl_reply "$(grep '"msg":"LUN created from config"' $RUNNER_LOG | grep -c '"nlReplySupported":-1')"
f0_uio=$(uio_of f0); result f0_enabled "$(cat "$(dev_path f0)/enable" 2>/dev/null)"
wait_for 30 holds_uio "$RUNNER_PID" "$f0_uio"
result f0_holders "ts=$(holds $RUNNER_PID "$f0_uio") tr=$(holds $TR_PID "$f0_uio")"

# -- tcmu-runner's own LUN: made by hand, answered by tcmu-runner, ignored by tcmu-ts ---
c0_uio=$(tcmu_create c0 "qcow/$S/c0.img" $((64 * MiB)) 2>$S/c0.err) && c0_uio=${c0_uio#/dev/}
result c0_enabled "$(cat "$(dev_path c0)/enable" 2>/dev/null)"; dump_log c0 $S/c0.err 5
wait_for 30 holds_uio "$TR_PID" "$c0_uio"
result c0_holders "ts=$(holds $RUNNER_PID "$c0_uio") tr=$(holds $TR_PID "$c0_uio")"
wait_for 10 grep -q 'left to the other runner' $RUNNER_LOG
result ts_left_c0 "$(grep 'left to the other runner' $RUNNER_LOG | grep -c '"subtype":"qcow"')"

# -- targetcli lists tcmu-runner's handlers (it owns the name) ------------------------
timeout 120 targetcli ls /backstores > $S/ls.out 2>&1
result ls_user_qcow "$(grep -c 'user:qcow ' $S/ls.out)"
result ls_user_file "$(grep -c 'user:file ' $S/ls.out)"

# -- both on one loopback target: LUN 0 tcmu-ts, LUN 1 tcmu-runner ---------------------
sd_f=$(loop_export f0 0) && sd_c=$(loop_export c0 1) && result export ok || result export fail
if [ -n "${sd_f:-}" ] && [ -n "${sd_c:-}" ]; then
  dd if=/dev/urandom of=$S/pat_f bs=1M count=4 status=none; dd if=/dev/urandom of=$S/pat_c bs=1M count=4 status=none
  check dd_f dd if=$S/pat_f of=$sd_f bs=1M count=4 oflag=direct status=none
  check dd_c dd if=$S/pat_c of=$sd_c bs=1M count=4 oflag=direct status=none
  sync; echo 3 > /proc/sys/vm/drop_caches
  result f_readback "$(dd if=$sd_f bs=1M count=4 iflag=direct status=none | cmp -s - $S/pat_f && echo same || echo differs)"
  result c_readback "$(dd if=$sd_c bs=1M count=4 iflag=direct status=none | cmp -s - $S/pat_c && echo same || echo differs)"
  # Each runner wrote its own image: f0.img holds pat_f, c0.img holds pat_c.
  result f_in_image "$(cmp -s -n $((4 * MiB)) $A/f0.img $S/pat_f && echo yes || echo no)"
  result c_in_image "$(cmp -s -n $((4 * MiB)) $S/c0.img $S/pat_c && echo yes || echo no)"
fi

# -- the race: a tcmu-ts device made by hand without nl_reply_supported=-1 -------------
mkdir -p $CFG/core/user_1/p0
echo -n "dev_config=file/$A/p0.img,dev_size=$((64 * MiB))" > $CFG/core/user_1/p0/control
# bash, not sh: dash's echo reports every failed write as "I/O error", bash says which errno.
timeout 60 bash -c "echo 1 > $CFG/core/user_1/p0/enable" 2>$S/p0.err; result p0_enable_rc $?
result p0_enable_err "$(tr -d '\n' < $S/p0.err | sed 's/.*: //')"
result p0_enabled "$(cat $CFG/core/user_1/p0/enable 2>/dev/null)"
sleep 3   # tcmu-ts checks for ~2 s whether the device went away
result p0_served "$($TS status --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).luns.filter(l=>l.id.endsWith("/p0")).length))')"
result p0_ts_fds "$(ls -l /proc/$RUNNER_PID/fd 2>/dev/null | grep -c '/dev/uio')"
result p0_refused_logged "$(grep -c 'the kernel refused this device before tcmu-ts answered' $RUNNER_LOG)"
dmesg | grep -c 'could not find device with dev id' | sed 's/^/@@RESULT kmsg_second_reply=/'
rmdir $CFG/core/user_1/p0 2>/dev/null

# -- each runner still serves its own LUN after all that --------------------------------
result f_after "$(dd if=$sd_f bs=1M count=4 iflag=direct status=none 2>/dev/null | cmp -s - $S/pat_f && echo same || echo differs)"
result c_after "$(dd if=$sd_c bs=1M count=4 iflag=direct status=none 2>/dev/null | cmp -s - $S/pat_c && echo same || echo differs)"
# Measured, not asserted: a RECONFIG (dev_size) of tcmu-runner's LUN while both run.
timeout 30 bash -c "echo $((96 * MiB)) > $(dev_path c0)/attrib/dev_size" 2>$S/rc.err; result reconfig_c0_rc "$? $(tr -d '\n' < $S/rc.err)"
result ts_errors_a "$(grep '"level":[56]0' "$RUNNER_LOG" 2>/dev/null | grep -vc 'the kernel refused this device before tcmu-ts answered')"
dump_log runner-a "$RUNNER_LOG" 30
teardown_all && result teardown ok || result teardown fail
runner_stop
tr_stop

# -- tcmu-ts first: it owns the name; tcmu-runner started next does not get it ---------
printf '[daemon]\nallowed_dirs = ["%s"]\n' "$A" > $S/bare.toml
RUNNER_LOG=$S/runner-b.log
node "$TCMU_TS_ROOT/dist/src/cli/main.js" serve --config $S/bare.toml > $RUNNER_LOG 2>&1 &
RUNNER_PID=$!
# Wait for the name itself (a slow start under emulation once outlasted a 60 s wait for the log line).
wait_for 120 name_is "$RUNNER_PID"
result b_ts_owner "$(name_is "$RUNNER_PID" && echo yes || echo "no:$(name_pid)")"
tr_start; sleep 5
result b_owner_with_both "$(name_is "$RUNNER_PID" && echo tcmu-ts || { name_is "$TR_PID" && echo tcmu-runner || echo "other:$(name_pid)"; })"
runner_stop; RUNNER_PID=
wait_for 10 name_is "$TR_PID"
# Measured, not asserted: whether tcmu-runner (queued by GLib) takes the name once tcmu-ts leaves.
result b_owner_after_ts_stops "$(name_is "$TR_PID" && echo tcmu-runner || echo "none:$(name_pid)")"
tr_stop

# -- tcmu-ts alone, a device of tcmu-runner's subtype: nobody answers ------------------
RUNNER_LOG=$S/runner-c.log
node "$TCMU_TS_ROOT/dist/src/cli/main.js" serve --config $S/bare.toml > $RUNNER_LOG 2>&1 &
RUNNER_PID=$!
wait_for 60 grep -q 'tcmu-ts ready' $RUNNER_LOG
mkdir -p $CFG/core/user_1/c2
echo -n "dev_config=qcow/$S/c0.img,dev_size=$((64 * MiB))" > $CFG/core/user_1/c2/control
( echo 1 > $CFG/core/user_1/c2/enable ) 2>$S/c2.err &
EN_PID=$!
sleep 5
result c2_waiting "$(kill -0 $EN_PID 2>/dev/null && echo yes || echo no)"
wait_for 10 grep -q 'no other TCMU runner is running' $RUNNER_LOG
result c2_ts_warned "$(grep '"level":40' $RUNNER_LOG | grep -c 'no other TCMU runner is running.*reset_netlink')"
P=/sys/module/target_core_user/parameters
result params "$(ls $P | tr '\n' ' ')"
if [ -w $P/reset_netlink ] && [ -w $P/block_netlink ]; then
  echo 1 > $P/block_netlink; echo 1 > $P/reset_netlink; echo 0 > $P/block_netlink
fi
n=0; while kill -0 $EN_PID 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done
if kill -0 $EN_PID 2>/dev/null; then result c2_after_reset still-waiting; else wait $EN_PID; result c2_after_reset "rc=$? $(tr -d '\n' < $S/c2.err | sed 's/.*: //')"; fi
result ts_errors_c "$(grep -c '"level":[56]0' $RUNNER_LOG)"
if kill -0 $EN_PID 2>/dev/null; then
  # An enable the kernel still waits on would hold up the teardown: leave it to poweroff.
  runner_stop; [ -n "$DBUS_PID" ] && kill "$DBUS_PID"; dump_log runner "$RUNNER_LOG" 20
else
  finish
fi
