# Aborts honoured by the handler (docs/HANDLERS.md, "Aborts"): LUN a0's
# handler (test/kernel/fixtures/abortable-gate-handler.mjs) waits while a
# gate file exists but stops a call when its abort signal fires. The gate
# stays CLOSED while each task management function runs, and the kernel's
# cmd_time_out is 300 s, far beyond every wait here: only the runner passing
# the abort to the handler, and completing the command TASK ABORTED, can let
# a LUN RESET or an ABORT TASK finish. No timing is measured.
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
GATE=/mnt/scratch/gate
GLOG=$GATE.log
cat > /mnt/scratch/tcmu-ts.toml <<TOML
[daemon]
handlers = { agate = "$TCMU_TS_ROOT/test/kernel/fixtures/abortable-gate-handler.mjs" }
TOML
runner_start --config /mnt/scratch/tcmu-ts.toml && result runner ok || result runner fail
timeout 60 $TS lun create a0 --backstore agate --path $GATE --size 64M --cmd-timeout 300 >/dev/null && result create ok || result create fail
adev=$(loop_export a0 0) && result export "$adev" || result export fail
SYSDEV=/sys/block/${adev#/dev/}/device
wait_gone() { local pid=$1 secs=$2 n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt $((secs * 5)) ]; do sleep 0.2; n=$((n+1)); done; ! kill -0 "$pid" 2>/dev/null; }
parked() { [ "$(grep -c '^parked' "$GLOG" 2>/dev/null)" -ge "$1" ]; }

# 1. LUN RESET while a read waits behind the closed gate. The initiator's
#    own timeout is long, so no ABORT TASK runs meanwhile.
echo 120 > $SYSDEV/timeout
touch $GATE
dd if="$adev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/mnt/scratch/dd1.err &
DD1=$!
wait_for 30 parked 1 && result reset_parked ok || result reset_parked fail
( timeout 100 sg_reset -d "$adev"; echo $? > /mnt/scratch/reset.rc ) &
RESET=$!
wait_gone $RESET 110 && result reset_rc "$(cat /mnt/scratch/reset.rc)" || result reset_rc stuck
result reset_gate_closed "$([ -e $GATE ] && echo yes || echo no)"
result reset_aborted "$(grep -c 'aborted: command aborted by LUN RESET' "$GLOG")"
rm -f $GATE
wait_gone $DD1 150 && { wait $DD1; result dd1_rc "$?"; } || result dd1_rc stuck

# 2. ABORT TASK: the initiator gives up after 5 s; the abort must finish
#    with the gate still closed.
before=$(grep -c '^parked' "$GLOG")
echo 5 > $SYSDEV/timeout
touch $GATE
dd if="$adev" of=/dev/null bs=4k count=1 skip=8 iflag=direct status=none 2>/mnt/scratch/dd2.err &
DD2=$!
wait_for 30 parked $((before + 1)) && result abort_parked ok || result abort_parked fail
wait_for 60 sh -c 'dmesg | grep -q "ABORT_TASK: Sending TMR_FUNCTION_COMPLETE"' && result abort_done ok || result abort_done fail
result abort_gate_closed "$([ -e $GATE ] && echo yes || echo no)"
result abort_aborted "$(grep -c 'aborted: command aborted by ABORT TASK' "$GLOG")"
# Let the initiator's retries through: long timeout, gate open.
echo 120 > $SYSDEV/timeout
rm -f $GATE
wait_gone $DD2 150 && result dd2_done ok || result dd2_done stuck

# The LUN serves normally afterwards.
head -c 65536 /dev/urandom > /mnt/scratch/pat
dd if=/mnt/scratch/pat of="$adev" bs=64k oflag=direct status=none && dd if="$adev" of=/mnt/scratch/pat2 bs=64k count=1 iflag=direct status=none \
  && cmp -s /mnt/scratch/pat /mnt/scratch/pat2 && result recovered ok || result recovered fail
result tmr_abort "$(grep '"msg":"task management function"' "$RUNNER_LOG" | grep -c '"type":1')"
result tmr_lun_reset "$(grep '"msg":"task management function"' "$RUNNER_LOG" | grep -c '"type":5')"
result hung_tasks "$(dmesg | grep -c 'blocked for more than')"
dump_log gate "$GLOG" 20
dmesg | grep -iE 'abort|reset|tcmu|timeout' | tail -20 | sed 's/^/@@LOG dmesg /'
runner_stop
dump_log runner "$RUNNER_LOG" 40
echo "@@EXIT 0"
