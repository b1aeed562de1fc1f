# targetcli drives tcmu-ts, as an admin would: a system bus with tcmu-ts's
# policy, the daemon registered as org.kernel.TCMUService1, and Debian's
# targetcli-fb listing, creating (CheckConfig first), exporting and clearing
# user:<subtype> backstores. During fio on the exported LUN the daemon's
# metrics endpoint is scraped before and after; the counter deltas are
# reported next to fio's own I/O counts. The daemon logs to a file
# (--log-file) that is rotated as logrotate does it (mv, then SIGHUP) in the
# middle of the run. Asserted in targetcli.test.ts.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
A=$S/allowed
O=$S/outside
MiB=1048576
METRICS=http://127.0.0.1:9470/metrics
# The daemon's own log file; rotated to $LOG.1 at the first SIGHUP below.
LOG=$S/daemon.log
RUNNER_STDOUT=$S/daemon.stdout RUNNER_LOG=$LOG
# every log line, across the rotation
whole_log() { cat "$LOG.1" "$LOG" 2>/dev/null; }
export HOME=/root TARGETCLI_HOME=/root/.targetcli
mkdir -p $A $O /run/dbus
truncate -s $((64 * MiB)) $A/d0.img
truncate -s $((64 * MiB)) $O/secret.img
qemu-img create -q -f qcow2 $A/q0.qcow2 64M
cat > $S/tcmu-ts.toml <<TOML
[daemon]
allowed_dirs = ["$A"]
metrics = "127.0.0.1:9470"
TOML
# Debian's system bus configuration plus the policy tcmu-ts ships (/etc is
# read-only in the guest, so it is included rather than installed).
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
  [ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null
  result runner_log_errors "$(whole_log | grep -c '"level":[56]0')"
  # the one error line expected: the deliberately broken config's reload refusal
  result unexpected_errors "$(whole_log | grep '"level":[56]0' | grep -vc 'config reload refused')"
  # rotation lost or tore nothing: every line of both files is one JSON object
  result log_lines_not_json "$(whole_log | node -e 'let n=0;require("readline").createInterface({input:process.stdin}).on("line",l=>{try{JSON.parse(l)}catch{n++}}).on("close",()=>console.log(n))')"
  dump_log runner_stdout "$RUNNER_STDOUT" 10
  dump_log runner "$RUNNER_LOG" 60
}
# tcli KEY ARGS...: run targetcli, report its exit code as KEY_rc and its output as
# @@LOG KEY; the output stays in $S/KEY.out for the checks that follow.
tcli() { local k="$1" rc; shift
  timeout 120 targetcli "$@" > "$S/$k.out" 2>&1; rc=$?
  result "${k}_rc" $rc; tail -n 40 "$S/$k.out" | sed "s/^/@@LOG $k /"; }
# metric NAME LABELS: one sample from the metrics endpoint (0 if absent)
scrape() { curl -fsS $METRICS > "$1"; }
metric() { local v; v=$(grep -F "$2{$3}" "$1" | awk '{print $2}' | head -1); echo "${v:-0}"; }

# -- the bus and the daemon ------------------------------------------------------------
if dbus-daemon --config-file=$S/system-bus.conf --fork --print-pid=1 > $S/dbus.pid 2>$S/dbus.err \
   && wait_for 20 test -S /run/dbus/system_bus_socket; then
  DBUS_PID=$(cat $S/dbus.pid); result dbus ok
else
  result dbus fail; dump_log dbus $S/dbus.err; finish; exit 1
fi
if runner_start --config $S/tcmu-ts.toml --log-file "$LOG" && wait_for 60 grep -q 'D-Bus service registered' "$RUNNER_LOG"; then
  result runner ok
else
  result runner fail; finish; exit 1
fi

# -- targetcli sees the handlers --------------------------------------------------------
tcli ls ls /backstores
for h in file qcow2 ram; do result "ls_user_$h" "$(grep -c "user:$h" $S/ls.out)"; done
tcli help_file /backstores/user:file help create
result help_configdesc "$(grep -c 'tcmu-ts file' $S/help_file.out)"

# -- create: CheckConfig, then the kernel device, then tcmu-ts serves it ----------------
tcli create_d0 /backstores/user:file create name=d0 size=64M "cfgstring=$A/d0.img"
result d0_enabled "$(cat "$(dev_path d0)/enable" 2>/dev/null)"
tcli create_q0 /backstores/user:qcow2 create name=q0 size=64M "cfgstring=$A/q0.qcow2"
result q0_enabled "$(cat "$(dev_path q0)/enable" 2>/dev/null)"
tcli create_new /backstores/user:file create name=n0 size=16M "cfgstring=$A/n0.img;create=1"
result n0_enabled "$(cat "$(dev_path n0)/enable" 2>/dev/null)"
result n0_file_size "$(stat -c %s $A/n0.img 2>/dev/null)"
# Refused by CheckConfig: targetcli prints tcmu-ts's reason and creates nothing.
tcli create_bad /backstores/user:file create name=bad size=64M "cfgstring=$O/secret.img"
result bad_reason "$(grep -c 'cfgstring invalid: .*is not under any allowed directory' $S/create_bad.out)"
result bad_exists "$(dev_path bad >/dev/null && echo yes || echo no)"
wait_for 30 bash -c "[ \$(grep -c '\"msg\":\"LUN serving\"' $RUNNER_LOG) -ge 3 ]"
result serving "$(grep -c '"msg":"LUN serving"' "$RUNNER_LOG")"

# -- export on loopback with targetcli, then I/O ----------------------------------------
tcli loop_create /loopback create $LOOP_WWN
tcli loop_lun /loopback/$LOOP_WWN/luns create /backstores/user:file/d0
addr=$(cat $CFG/loopback/$LOOP_WWN/tpgt_1/address 2>/dev/null)
if [ -n "$addr" ] && wait_for 60 _scsi_block "$addr:0"; then sd=$(_scsi_block "$addr:0"); result export "$sd"; else result export fail; finish; exit 1; fi
echo 2 > /proc/sys/vm/drop_caches
check dd_write dd if=/dev/urandom of=$S/pattern bs=1M count=4 status=none
check dd_to_lun dd if=$S/pattern of="$sd" bs=1M count=4 oflag=direct status=none
check dd_back dd if="$sd" of=$S/readback bs=1M count=4 iflag=direct status=none
result io_match "$(cmp -s $S/pattern $S/readback && echo yes || echo no)"

# -- fio against the metrics -----------------------------------------------------------
LUN='lun="user_'"$(dev_path d0 | sed 's#.*/user_\([0-9]*\)/.*#\1#')"'/d0"'
scrape $S/m0 || result scrape0 fail
fio --name=metrics --filename="$sd" --direct=1 --ioengine=libaio --rw=randrw --rwmixread=60 --bs=4k \
    --iodepth=16 --size=48M --runtime=25 --time_based --randrepeat=0 --output-format=json > $S/fio.json 2>$S/fio.err &
FIO_PID=$!
# -- config reload while fio runs: add a LUN to the file, HUP, then drop it, HUP ----------
cp $S/tcmu-ts.toml $S/tcmu-ts.toml.orig
printf '\n[lun.r0]\nbackstore = "ram"\nsize = "16M"\n' >> $S/tcmu-ts.toml
# The same SIGHUP reopens the log file: rotate it first, as logrotate does.
mv "$LOG" "$LOG.1"
kill -HUP "$RUNNER_PID"
if wait_for 60 test -d "$CFG/core/user_1/r0" && wait_for 60 bash -c "grep 'user_1/r0' $RUNNER_LOG | grep -q 'LUN serving'"; then result reload_add ok; else result reload_add fail; fi
# After the rotation: the old file holds the start, the new one (created 0600) what followed.
result rotated_old_has_start "$(grep -c 'D-Bus service registered' "$LOG.1" 2>/dev/null)"
result rotated_new_mode "$(stat -c %a "$LOG" 2>/dev/null)"
result rotated_new_has_reload "$(grep 'user_1/r0' "$LOG" 2>/dev/null | grep -c 'LUN serving')"
printf '[daemon]\nlog_level = "bogus"\n' > $S/tcmu-ts.toml.bad; cp $S/tcmu-ts.toml $S/tcmu-ts.toml.good
cp $S/tcmu-ts.toml.bad $S/tcmu-ts.toml; kill -HUP "$RUNNER_PID"
wait_for 30 grep -q 'config reload refused' "$RUNNER_LOG" && result reload_bad refused || result reload_bad fail
result reload_bad_kept "$(test -d "$CFG/core/user_1/r0" && echo yes || echo no)"
cp $S/tcmu-ts.toml.orig $S/tcmu-ts.toml; kill -HUP "$RUNNER_PID"
if wait_for 60 bash -c "! test -d $CFG/core/user_1/r0" && wait_for 60 grep -q 'config reload: LUN removed' "$RUNNER_LOG"; then result reload_remove ok; else result reload_remove fail; fi
wait $FIO_PID
result fio_rc $?
scrape $S/m1 || result scrape1 fail
node -e 'const j=require(process.argv[1]).jobs[0]; console.log(`@@RESULT fio_read_ios=${j.read.total_ios}`); console.log(`@@RESULT fio_read_bytes=${j.read.io_bytes}`); console.log(`@@RESULT fio_write_ios=${j.write.total_ios}`); console.log(`@@RESULT fio_errors=${j.error}`)' $S/fio.json
for op in read write; do
  a=$(metric $S/m0 tcmu_ts_commands_total "$LUN,op=\"$op\""); b=$(metric $S/m1 tcmu_ts_commands_total "$LUN,op=\"$op\"")
  result "metric_${op}_delta" $((b - a))
  a=$(metric $S/m0 tcmu_ts_command_duration_seconds_count "$LUN,op=\"$op\""); b=$(metric $S/m1 tcmu_ts_command_duration_seconds_count "$LUN,op=\"$op\"")
  result "hist_${op}_delta" $((b - a))
done
result metric_read_bytes_delta $(( $(metric $S/m1 tcmu_ts_read_bytes_total "$LUN") - $(metric $S/m0 tcmu_ts_read_bytes_total "$LUN") ))
result metric_in_flight "$(metric $S/m1 tcmu_ts_commands_in_flight "$LUN")"
result metric_process "$(grep -c '^tcmu_ts_process_cpu_user_seconds_total' $S/m1)"
grep -F "$LUN" $S/m1 | grep -v _bucket | sed 's/^/@@LOG metrics /'

# -- clearconfig: targetcli removes everything, the daemon closes every LUN --------------
tcli clear clearconfig confirm=True
wait_for 60 bash -c "[ \$(grep -c '\"msg\":\"LUN stopped\"' $RUNNER_LOG) -ge 4 ]"
result stopped "$(grep -c '"msg":"LUN stopped"' "$RUNNER_LOG")"
result left_devices "$(ls -d $CFG/core/user_*/* 2>/dev/null | wc -l)"
scrape $S/m2 && result luns_in_metrics "$(grep -c '^tcmu_ts_commands_in_flight{' $S/m2)"
result status_luns "$($TS status --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).luns.length))')"
finish
