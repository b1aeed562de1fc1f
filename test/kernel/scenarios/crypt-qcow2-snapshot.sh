# Guest scenario: crypt over qcow2 over a file (`crypt/;key=k1>qcow2/PATH`),
# the key given to the running daemon with `tcmu-ts key add` (memory only,
# never in key_dir), then a live snapshot through the stack:
#   write m1, `snapshot create`, write m2 over it and m3 into a region the
#   snapshot saw empty, read both; `snapshot revert`: m1 and the empty region
#   are back; a write after the revert reads back.
# Then offline, with the standard tools only: qemu-img check and snapshot -l
# on the qcow2, qemu-img convert to raw, cryptsetup open of that raw: the
# regions read as the LUN last showed them. The key must not appear in the
# runner log. Sourced after guest-lib.sh; asserted in
# crypt-qcow2-snapshot.test.ts.
set -u
S=/mnt/scratch/cq
KD=$S/keys
MiB=1048576
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
SOCK=$S/control.sock
QC=$S/enc.qcow2
SIZE=$((96 * MiB))
SNAP_OFF_MB=40       # 4 MiB region: m1, then m2, then m1 again
NEW_OFF_MB=60        # 4 MiB region never written before the snapshot
export DM_DISABLE_UDEV=1
mkdir -p $S $KD && chmod 0700 $KD
for m in dm_mod dm_crypt loop xts aesni_intel aes_generic; do modprobe -d "$TCMU_VM_KDIR" $m 2>/dev/null; done
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The key file lives outside key_dir: the daemon only learns the key from `key add`.
printf '%s\n' "$KEY" > $S/k1.key && chmod 0600 $S/k1.key
cat > $S/tcmu-ts.toml <<TOML
[daemon]
key_dir = "$KD"
control_socket = "$SOCK"
TOML
region() { dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1; }
check() { local k="$1"; shift; if "$@" > $S/step.out 2>&1; then result "$k" ok; else result "$k" fail; dump_log "$k" $S/step.out; fi; }
finish() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  result leak_log "$(grep -c -- "$KEY" "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 40
}

# -- the image: a LUKS2 container made by cryptsetup, carried into a qcow2 by qemu-img ----------
# (cryptsetup's minimum PBKDF2 cost: a loaded host under emulation makes a default KDF take minutes)
truncate -s $((SIZE + 16 * MiB)) $S/enc.raw
check cs_format cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --key-file $S/k1.key $S/enc.raw
check qcow2_convert qemu-img convert -f raw -O qcow2 $S/enc.raw $QC
rm -f $S/enc.raw
for p in m1 m2 m3 m4; do head -c $((4 * MiB)) /dev/urandom > $S/$p; result $p "$(sha256sum < $S/$p | cut -d' ' -f1)"; done
result zeros4 "$(head -c $((4 * MiB)) /dev/zero | sha256sum | cut -d' ' -f1)"

# -- the daemon, the key over the control socket, then the LUN -----------------------------
if RUNNER_TIMEOUT=120 runner_start --config $S/tcmu-ts.toml; then result runner ok; else result runner fail; finish; exit 1; fi
check key_add bash -c "$TS key add k1 --socket $SOCK < $S/k1.key"
result key_list "$($TS key list --socket $SOCK 2>&1 | paste -sd' ' -)"
uio=$(tcmu_create c0 "crypt/;key=k1>qcow2/$QC" $((80 * MiB))) && result create "$uio" || result create fail
holds() { ls -l /proc/"$RUNNER_PID"/fd 2>/dev/null | grep -q "$uio\$"; }
wait_for 600 holds && result lun_open ok || result lun_open fail
if sd=$(loop_export c0 0); then result export "$sd"; else result export fail; finish; exit 1; fi
result initial_new_region "$(region "$sd" $NEW_OFF_MB 4)"

# -- live snapshot through the crypt layer ---------------------------------------------------
dd if=$S/m1 of="$sd" bs=1M seek=$SNAP_OFF_MB oflag=direct conv=fsync status=none && result write_m1 ok || result write_m1 fail
result before_snap_region "$(region "$sd" $SNAP_OFF_MB 4)"
out=$(timeout 180 $TS snapshot create c0 snap1 --socket $SOCK 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_create /'
[ $rc = 0 ] && result snap_create ok || result snap_create fail
sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1
dd if=$S/m2 of="$sd" bs=1M seek=$SNAP_OFF_MB oflag=direct conv=fsync status=none && result write_m2 ok || result write_m2 fail
dd if=$S/m3 of="$sd" bs=1M seek=$NEW_OFF_MB oflag=direct conv=fsync status=none && result write_m3 ok || result write_m3 fail
result after_snap_region "$(region "$sd" $SNAP_OFF_MB 4)"
result after_snap_new_region "$(region "$sd" $NEW_OFF_MB 4)"
out=$(timeout 60 $TS snapshot list c0 --socket $SOCK 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_list /'
result snap_list_has "$(grep -cw snap1 <<<"$out")"
out=$(timeout 180 $TS snapshot revert c0 snap1 --socket $SOCK 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG snap_revert /'
[ $rc = 0 ] && result snap_revert ok || result snap_revert fail
sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1
blockdev --flushbufs "$sd"
result after_revert_region "$(region "$sd" $SNAP_OFF_MB 4)"
result after_revert_new_region "$(region "$sd" $NEW_OFF_MB 4)"
dd if=$S/m4 of="$sd" bs=1M seek=$NEW_OFF_MB oflag=direct conv=fsync status=none && result write_m4 ok || result write_m4 fail
result after_revert_write "$(region "$sd" $NEW_OFF_MB 4)"
result status_leak "$($TS status --socket $SOCK 2>&1 | grep -c -- "$KEY")"

# -- offline: qemu-img and cryptsetup read what the LUN last showed ---------------------------
finish
out=$(qemu-img check $QC 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG qemu_check /'
result qemu_check_rc $rc
result qemu_snapshot_has "$(qemu-img snapshot -l $QC 2>&1 | grep -cw snap1)"
check qemu_to_raw qemu-img convert -f qcow2 -O raw $QC $S/out.raw
if loop=$(losetup -f --show $S/out.raw) && cryptsetup open --key-file $S/k1.key $loop cq; then
  result dm_open ok
  result dm_snap_region "$(region /dev/mapper/cq $SNAP_OFF_MB 4)"
  result dm_new_region "$(region /dev/mapper/cq $NEW_OFF_MB 4)"
  cryptsetup close cq
else
  result dm_open fail
fi
[ -n "${loop:-}" ] && losetup -d $loop
exit 0
