# Isolation and task management: LUN h0's handler (test/kernel/fixtures/
# gate-handler.mjs) hangs while a gate file exists. The other LUN must keep
# serving; the initiator's command timeout aborts the stuck command (ABORT
# TASK reaches the runner as a TMR), a LUN reset (sg_reset -d) completes, and
# h0 recovers when the handler returns.
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
GATE=/mnt/scratch/gate
cat > /mnt/scratch/tcmu-ts.toml <<TOML
[daemon]
handlers = { gate = "$TCMU_TS_ROOT/test/kernel/fixtures/gate-handler.mjs" }
TOML
runner_start --config /mnt/scratch/tcmu-ts.toml && result runner ok || result runner fail
truncate -s 256M /mnt/scratch/n0.img
timeout 60 $TS lun create n0 --backstore file --path /mnt/scratch/n0.img --size 256M >/dev/null && result create_n0 ok || result create_n0 fail
timeout 60 $TS lun create h0 --backstore gate --path $GATE --size 64M --cmd-timeout 10 >/dev/null && result create_h0 ok || result create_h0 fail
ndev=$(loop_export n0 0) && result export_n0 "$ndev" || result export_n0 fail
hdev=$(loop_export h0 1) && result export_h0 "$hdev" || result export_h0 fail
dd if=/dev/urandom of="$ndev" bs=1M count=64 oflag=direct status=none

iops() { fio --name=$1 --filename="$ndev" --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
  --size=64M --time_based --runtime=8 --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{print $8 ";" $5}'; }
r=$(iops base); result iops_base "${r%%;*}"

# h0's state as the runner reports it (tcmu-ts status --json): FIELD is
# stuckEvents or inFlight (the handler calls not settled yet).
h0_field() { $TS status --json | node -e 'const s = JSON.parse(require("fs").readFileSync(0, "utf8")); const l = s.luns.find((l) => l.id === "user_1/h0"); console.log(l === undefined ? "missing" : process.argv[1] === "inFlight" ? (l.stats?.inFlight ?? 0) : l[process.argv[1]])' "$1"; }
h0_at_least() { local v; v=$(h0_field "$1") && [ "$v" != missing ] && [ "$v" -ge "$2" ]; }
tmr_count() { grep '"msg":"task management function"' "$RUNNER_LOG" | grep -c "\"type\":$1"; }
lun_resets_above() { [ "$(tmr_count 5)" -gt "$1" ]; }

# Close the gate: h0's I/O hangs inside the handler. The stuck read is a
# SCSI pass-through (sg_raw) with a 4 s timeout: on expiry the initiator's
# error handler sends ABORT TASK, and a pass-through command that timed out
# is not retried. (A block-layer read would be retried with the same 4 s
# timeout, and the retry's timeout would escalate to the error handler's own
# LUN resets and finally offline the disk while the gate is closed.)
touch $GATE
sg_raw -r 4096 -t 4 "$hdev" 28 00 00 00 00 00 00 00 01 00 >/dev/null 2>/mnt/scratch/hung-read.err &
HUNG=$!
r=$(iops during); result iops_during "${r%%;*}"; result fio_during_err "${r##*;}"
# The watchdog reports a LUN stuck after 5 s without a completion: wait for that state, bounded.
wait_for 30 h0_at_least stuckEvents 1 || echo "hang-tmr: h0 not reported stuck 30 s after the gate closed" >&2
result h0_status "$(h0_field stuckEvents)"

# Let the ABORT TASK finish (the kernel completes the stuck command after
# h0's cmd_time_out) before the LUN RESET. A LUN RESET that overtakes a
# pending ABORT TASK on the same tcm_loop nexus hangs the initiator's error
# handler forever in Linux 6.1 (tcm_loop_issue_tmr never hears back): a
# kernel race this test must not provoke.
wait_for 30 sh -c 'dmesg | grep -q "ABORT_TASK: Found referenced"' && result abort_seen ok || result abort_seen fail
wait_for 60 sh -c 'dmesg | grep -q "ABORT_TASK: Sending TMR_FUNCTION_COMPLETE"' && result abort_done ok || result abort_done fail

# LUN reset while the handler still holds the aborted read (the kernel gave
# up on it, the handler has not returned). Open the gate only once the
# runner has seen the LUN RESET, so the reset cannot miss the stuck handler.
resets_before=$(tmr_count 5)
result h0_inflight_at_reset "$(h0_field inFlight)"
( timeout 120 sg_reset -d "$hdev"; echo $? > /mnt/scratch/reset.rc ) &
RESET=$!
if wait_for 60 lun_resets_above "$resets_before"; then
  result reset_reached_runner ok
else
  result reset_reached_runner fail; echo "hang-tmr: no new LUN RESET TMR in the runner log 60 s after sg_reset -d" >&2
fi
rm -f $GATE
# Bounded waits: a command stuck in the kernel must fail this scenario, not hang it.
wait_gone() { local pid=$1 n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done; ! kill -0 "$pid" 2>/dev/null; }
wait_gone $RESET && result reset_rc "$(cat /mnt/scratch/reset.rc)" || result reset_rc stuck
if wait_gone $HUNG; then wait $HUNG; result hung_read_rc "$?"; else result hung_read_rc stuck; fi
# h0 recovered: fresh I/O works again.
head -c 65536 /dev/urandom > /mnt/scratch/pat
dd if=/mnt/scratch/pat of="$hdev" bs=64k oflag=direct status=none && dd if="$hdev" of=/mnt/scratch/pat2 bs=64k count=1 iflag=direct status=none \
  && cmp -s /mnt/scratch/pat /mnt/scratch/pat2 && result h0_recovered ok || result h0_recovered fail

result tmr_abort "$(grep '"msg":"task management function"' "$RUNNER_LOG" | grep -c '"type":1')"
result tmr_lun_reset "$(grep '"msg":"task management function"' "$RUNNER_LOG" | grep -c '"type":5')"
result stuck_logged "$(grep -c 'handler I/O is stuck' "$RUNNER_LOG")"
# The watchdog logs the recovery on its next tick after the first fresh completion: wait for it, bounded.
wait_for 15 grep -q 'handler I/O recovered' "$RUNNER_LOG" || echo "hang-tmr: no recovery log line 15 s after h0 served again" >&2
result recovered_logged "$(grep -c 'handler I/O recovered' "$RUNNER_LOG")"
result hung_tasks "$(dmesg | grep -c 'blocked for more than')"
dmesg | grep -iE 'abort|reset|tcmu|timeout' | tail -20 | sed 's/^/@@LOG dmesg /'
runner_stop
dump_log runner "$RUNNER_LOG" 40
echo "@@EXIT 0"
