# Guest scenario: ALUA on a `file` LUN through tcm_loop, with no lock to
# follow (the RBD gateways scenario covers that). Sourced after guest-lib.sh.
#   1. No user-made port group: INQUIRY TPGS 0, REPORT TARGET PORT GROUPS
#      unsupported (LIO's default group is not reported).
#   2. The LUN in group "local" (id 7, implicit): LIO raises INQUIRY DATA
#      HAS CHANGED; then TPGS 1, VPD 0x83 with the relative target port and
#      the group, RTPG (both header formats) with the group's state and port.
#   3. Linux's own ALUA device handler attached to the disk reads all that:
#      its access_state follows an admin's configfs change to
#      active/non-optimized and back (LIO raises ASYMMETRIC ACCESS STATE
#      CHANGED; the handler re-reads REPORT TARGET PORT GROUPS from us).
set -u
IMG=/mnt/scratch/alua.img
SIZE=$((256 << 20))

finish() { finish_scenario "${1:-0}"; }
# clear_ua DEV: let the unit attentions LIO queued be reported (TUR takes them one by one)
clear_ua() { local i; for i in 1 2 3 4; do sg_turs "$1" >/dev/null 2>&1 && return 0; done; }

truncate -s $SIZE $IMG
uio=$(tcmu_create alua0 "file/$IMG" $SIZE) && result create "$uio" || { result create fail; finish 1; }
runner_start && result runner ok || { result runner fail; finish 1; }
sd=$(loop_export alua0 0) && result export "$sd" || { result export fail; finish 1; }
D=$CFG/core/user_1/alua0
LUN=$CFG/loopback/$LOOP_WWN/tpgt_1/lun/lun_0
clear_ua "$sd"

# -- 1. no user-made group ------------------------------------------------------
result plain_tpgs "$(tpgs "$sd")"
out=$(rtpg_report "$sd"); rc=$?
echo "$out" | sed 's/^/@@LOG plain_rtpg /'
result plain_rtpg_rc $rc
result plain_rtpg_refused "$(grep -c 'bad field in Report Target Port Groups cdb' <<<"$out")"

# -- 2. the LUN in a group -----------------------------------------------------------
mkdir "$D/alua/local" && echo 7 > "$D/alua/local/tg_pt_gp_id" && echo 1 > "$D/alua/local/alua_access_type" \
  && echo local > "$LUN/alua_tg_pt_gp" && result group ok || result group fail
result relative_port "$(cat "$LUN/statistics/scsi_port/indx")"
out=$(sg_turs -v "$sd" 2>&1)
result inquiry_changed_ua "$(grep -c 'Inquiry data has changed' <<<"$out")"
clear_ua "$sd"
result grouped_tpgs "$(tpgs "$sd")"
sg_vpd -p 0x83 "$sd" 2>&1 | sed 's/^/@@LOG vpd83 /'
result vpd83_relative_port "$(vpd83_port "$sd" 'Relative target port')"
result vpd83_group "$(vpd83_port "$sd" 'Target port group')"
for fmt in plain ext; do
  out=$(rtpg_report "$sd" $([ $fmt = ext ] && printf %s --extended)); rc=$?
  echo "$out" | sed "s/^/@@LOG rtpg_$fmt /"
  result rtpg_${fmt}_rc $rc
  result rtpg_${fmt}_extended "$(grep -c 'Implicit transition time' <<<"$out")"
  result rtpg_${fmt}_group "$(sed -n 's/.*target port group id *: *\(0x[0-9a-f]*\).*/\1/p' <<<"$out" | head -1)"
  result rtpg_${fmt}_state "$(rtpg_state_in <<<"$out")"
  result rtpg_${fmt}_port "$(grep -A1 -i 'Relative target port ids' <<<"$out" | tail -1 | tr -d ' ')"
done

# -- 3. Linux's ALUA handler on the disk ------------------------------------------------
# The handler attaches when a disk with TPGS != 0 is discovered: drop the
# disk and scan it again, as an initiator logging in after the admin's change.
modprobe -d "$TCMU_VM_KDIR" scsi_dh_alua 2>&1 | sed 's/^/@@LOG modprobe /'
hctl=$(basename "$(readlink -f /sys/block/${sd#/dev/}/device)")
echo 1 > /sys/block/${sd#/dev/}/device/delete
echo "- - -" > /sys/class/scsi_host/host${hctl%%:*}/scan
echo "@@LOG rescan hctl=$hctl devices=$(ls /sys/bus/scsi/devices | tr '\n' ' ')"
wait_for 30 _scsi_block "$hctl" && sd=$(_scsi_block "$hctl") && result rescan "$sd" || result rescan fail
sdev=/sys/block/${sd#/dev/}/device
result dh_state "$(cat $sdev/dh_state 2>/dev/null)"
# access_state as the handler knows it, after a read made it notice a change
access_after_io() { dd if="$sd" of=/dev/null bs=4k count=1 iflag=direct status=none; sleep 1; cat $sdev/access_state 2>/dev/null; }
wait_access() { local want="$1" i; for i in $(seq 1 20); do [ "$(access_after_io)" = "$want" ] && break; done; cat $sdev/access_state 2>/dev/null; }
result dh_access_initial "$(wait_access active/optimized)"
echo 1 > "$D/alua/local/alua_access_state" && result set_ano ok || result set_ano fail
result dh_access_ano "$(wait_access active/non-optimized)"
echo 0 > "$D/alua/local/alua_access_state" && result set_ao ok || result set_ao fail
result dh_access_ao "$(wait_access active/optimized)"
dmesg | grep -i 'alua' | tail -8 | sed 's/^/@@LOG dmesg /'
# What the handler took from VPD 0x83: "... port group 7 rel port 1"
result dh_vpd "$(dmesg | sed -n 's/.*alua: device .* \(port group [0-9a-f]* rel port [0-9a-f]*\).*/\1/p' | tail -1)"
# Leave the default group before teardown removes "local".
echo default_tg_pt_gp > "$LUN/alua_tg_pt_gp"
finish 0
