# Guest scenario: SCSI edge cases through the real kernel (tcm_loop, sg3-utils).
#  1. WRITE SAME(16) with UNMAP (zero block and NDOB) and UNMAP over whole and
#     partial granules on a file, a qcow2 (64 KiB clusters) and a ram LUN:
#     every LUN reports LBPRZ, so the ranges must read back as zeros and the
#     data around them must stay. NUMBER OF LOGICAL BLOCKS 0 is refused (WSNZ).
#  MODE SELECT (WCE off) survives a RECONFIG of the file LUN and a snapshot
#  revert of the qcow2 LUN, which report MEDIUM MAY HAVE CHANGED, not POWER ON.
#  EXTENDED COPY (sg_xcopy) from the file LUN to the ram LUN inside the daemon,
#  and to an in-kernel fileio LUN it does not serve (COPY TARGET DEVICE NOT REACHABLE).
#  Then libiscsi's conformance suites (iscsi-test-cu over SG_IO) for INQUIRY,
#  COMPARE AND WRITE, WRITE SAME(16), UNMAP, GET LBA STATUS on the file LUN.
#  2. Persistent reservations (emulated by the target core, which needs the
#     writable dbroot guest-boot.sh sets): the ram LUN exported through a
#     second tcm_loop target, so two I_T nexuses register, reserve, preempt.
# Sourced after guest-lib.sh; every step prints @@RESULT lines (asserted in
# scsi-edge.test.ts) and the scenario keeps going after a failed step.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
# 31 MiB: below 65536 blocks, where libiscsi's WriteSame16.Unmap step would
# READ(16) 32 MiB in one command, past the LUN's MAXIMUM TRANSFER LENGTH (it
# does not check it there) and SG_IO refuses it in the initiator's kernel.
SIZE=$((31 << 20))
DATA_MB=6

finish() { # tear down with the runner still answering, then stop it
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 60
}

result dbroot "$(cat $CFG/dbroot 2>/dev/null)"
# turs2 DEV: two TEST UNIT READYs, to consume pending unit attentions
turs2() { sg_turs "$1" >/dev/null 2>&1; sg_turs "$1" >/dev/null 2>&1; }
# first_ua DEV: the additional sense of the next command (a TEST UNIT READY), or "none"
first_ua() { local out; out=$(sg_raw "$1" 00 00 00 00 00 00 2>&1)
  sed -n 's/.*Additional sense: *\(.*\)$/\1/p' <<<"$out" | head -1 | grep . || echo none; }
# wce DEV: the caching mode page's current WCE bit (MODE SENSE(6), DBD)
wce() { local b; turs2 "$1"; b=$(sg_modes -6 -d -p 8 -r "$1" 2>/dev/null | od -An -tu1 -j 6 -N 1 | tr -d ' ')
  [ -n "$b" ] && echo $(( (b >> 2) & 1 )) || echo error; }
# wce_off DEV: MODE SELECT(6), PF=1, caching page with WCE=0
wce_off() { { printf '\000\000\000\000\010\022'; head -c 18 /dev/zero; } > /tmp/ms
  sg_raw -s 24 -i /tmp/ms "$1" 15 10 00 00 18 00; }

# -- three LUNs, one per handler that reports LBPRZ --------------------------------
truncate -s $SIZE $S/ws.img
check qcow2_create $TS image create $S/ws.qcow2 --size 31M
ok=1
tcmu_create wsfile "file/$S/ws.img" $SIZE >/dev/null || ok=0
tcmu_create wsqcow2 "qcow2/$S/ws.qcow2" $SIZE >/dev/null || ok=0
tcmu_create wsram "ram/" $SIZE >/dev/null || ok=0
[ $ok = 1 ] && result create ok || { result create fail; finish; exit 1; }
if runner_start; then result runner ok; else result runner fail; finish; exit 1; fi
declare -A SD
lun=0
for h in file qcow2 ram; do
  if SD[$h]=$(loop_export ws$h $lun); then result "export_$h" "${SD[$h]}"; else result "export_$h" fail; fi
  lun=$((lun + 1))
done

# -- 1. WRITE SAME(16) UNMAP / UNMAP read back as zeros ------------------------------
# Ranges in 512-byte blocks: [tool, lba, blocks]. 128 blocks = one qcow2
# cluster, 2048 = one ram chunk.
RANGES="ws 128 256
ws 1029 37
ws 1533 270
ndob 2300 300
unmap 3000 133
ws 4000 4400"
head -c $((DATA_MB << 20)) /dev/urandom > $S/orig
cp $S/orig $S/expect
while read -r tool lba n; do
  dd if=/dev/zero of=$S/expect bs=512 seek="$lba" count="$n" conv=notrunc status=none
done <<<"$RANGES"
result ws_expect "$(sha256sum < $S/expect | cut -d' ' -f1)"
result ws_orig "$(sha256sum < $S/orig | cut -d' ' -f1)"

for h in file qcow2 ram; do
  sd=${SD[$h]:-}
  [ -b "$sd" ] || { result "ws_${h}_after" missing; continue; }
  sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1   # consume unit attentions
  out=$(sg_readcap -l "$sd" 2>&1)
  printf '%s\n' "$out" | sed "s/^/@@LOG readcap_$h /"
  result "lbprz_$h" "$(sed -n 's/.*lbprz=\([0-9]\).*/\1/p' <<<"$out")"
  out=$(sg_vpd -p 0xb0 "$sd" 2>&1)
  result "wsnz_$h" "$(sed -n 's/.*(WSNZ): *\([0-9]\).*/\1/p' <<<"$out" | head -1)"
  dd if=$S/orig of="$sd" bs=1M oflag=direct status=none
  result "ws_${h}_before" "$(dd if="$sd" bs=1M count=$DATA_MB iflag=direct status=none | sha256sum | cut -d' ' -f1)"
  fails=0
  while read -r tool lba n; do
    case $tool in
      ws) out=$(sg_write_same --16 --unmap --lba="$lba" --num="$n" "$sd" 2>&1) ;;
      ndob) out=$(sg_write_same --16 --unmap --ndob --lba="$lba" --num="$n" "$sd" 2>&1) ;;
      unmap) out=$(sg_unmap --lba="$lba" --num="$n" "$sd" 2>&1) ;;
    esac
    rc=$?
    [ $rc = 0 ] || { fails=$((fails + 1)); printf '%s\n' "$out" | sed "s/^/@@LOG ws_$h /"; }
  done <<<"$RANGES"
  result "ws_${h}_cmd_failures" "$fails"
  result "ws_${h}_after" "$(dd if="$sd" bs=1M count=$DATA_MB iflag=direct status=none | sha256sum | cut -d' ' -f1)"
  # NUMBER OF LOGICAL BLOCKS 0 with WSNZ=1: ILLEGAL REQUEST / INVALID FIELD IN CDB, nothing written
  # (sg_raw, as sg_write_same prints only the sense key)
  head -c 512 /dev/zero > /tmp/blk
  out=$(sg_raw -s 512 -i /tmp/blk "$sd" 93 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2>&1); rc=$?
  printf '%s\n' "$out" | sed "s/^/@@LOG wsnz_$h /"
  result "wsnz_${h}_rc" "$rc"
  result "wsnz_${h}_key" "$(sed -n 's/.*Sense key: *\(.*\)$/\1/p' <<<"$out" | head -1)"
  result "wsnz_${h}_asc" "$(sed -n 's/.*Additional sense: *\(.*\)$/\1/p' <<<"$out" | head -1)"
  result "wsnz_${h}_after" "$(dd if="$sd" bs=1M count=$DATA_MB iflag=direct status=none | sha256sum | cut -d' ' -f1)"
done

# -- 3. MODE SELECT survives a RECONFIG (file) and a snapshot revert (qcow2) ----------
if [ -b "${SD[file]:-}" ] && [ -b "${SD[qcow2]:-}" ]; then
  for h in file qcow2; do
    result "mode_${h}_wce_before" "$(wce "${SD[$h]}")"
    check "mode_${h}_select" wce_off "${SD[$h]}"
    result "mode_${h}_wce_selected" "$(wce "${SD[$h]}")"
  done
  check mode_reconfig timeout 60 sh -c "echo -n 'file/$S/ws.img;io=threads' > $CFG/core/user_1/wsfile/attrib/dev_config"
  result mode_file_ua "$(first_ua "${SD[file]}")"
  result mode_file_wce_after "$(wce "${SD[file]}")"
  check mode_snapshot_create timeout 120 $TS snapshot create wsqcow2 s1
  check mode_snapshot_revert timeout 120 $TS snapshot revert wsqcow2 s1
  result mode_qcow2_ua "$(first_ua "${SD[qcow2]}")"
  result mode_qcow2_wce_after "$(wce "${SD[qcow2]}")"
fi

# -- 4. EXTENDED COPY between two LUNs of the daemon, and to a LUN it does not serve ------
# sg_xcopy reads both LUNs' VPD 0x83 and sends EXTENDED COPY (LID1) to the source.
# sg_xcopy wants the sg nodes (given /dev/sdX it looked for an sg node it could not open).
sg_of() { local g; for g in /sys/block/${1#/dev/}/device/scsi_generic/sg*; do [ -e "$g" ] && { echo "/dev/${g##*/}"; return 0; }; done; return 1; }
if [ -b "${SD[file]:-}" ] && [ -b "${SD[ram]:-}" ]; then
  head -c $((1 << 20)) /dev/urandom > $S/xc
  dd if=$S/xc of="${SD[file]}" bs=1M seek=8 oflag=direct status=none
  turs2 "${SD[file]}"; turs2 "${SD[ram]}"
  out=$(sg_xcopy if="$(sg_of "${SD[file]}")" of="$(sg_of "${SD[ram]}")" bs=512 skip=16384 seek=20480 count=2048 2>&1); rc=$?
  printf '%s\n' "$out" | tail -n 20 | sed 's/^/@@LOG xcopy /'
  result xcopy_rc "$rc"
  result xcopy_src "$(sha256sum < $S/xc | cut -d' ' -f1)"
  result xcopy_dst "$(dd if="${SD[ram]}" bs=1M skip=10 count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1)"
  # The in-kernel fileio backstore: a LUN on the same target that this daemon does not serve.
  truncate -s $SIZE $S/ref.img
  if fileio_create ref $S/ref.img $SIZE && ref=$(loop_export ref 3); then
    out=$(sg_xcopy -v if="$(sg_of "${SD[file]}")" of="$(sg_of "$ref")" bs=512 count=8 2>&1); rc=$?
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/@@LOG xcopy_foreign /'
    result xcopy_foreign_rc "$rc"
    # sg_xcopy -v names the sense key only (exit status 10 = COPY ABORTED); the
    # additional sense (COPY TARGET DEVICE NOT REACHABLE) is pinned by the unit tests.
    result xcopy_foreign_sense "$(grep -io 'copy aborted' <<<"$out" | head -1)"
  else
    result xcopy_foreign_rc setup-failed
  fi
fi

# -- conformance: libiscsi's test suite over SG_IO on the file LUN ------------------
# (iscsi-test-cu, Debian libiscsi-bin; --dataloss allows its writes)
if [ -b "${SD[file]:-}" ] && command -v iscsi-test-cu >/dev/null; then
  # (ExtendedCopy is left out: its Simple test READ(16)s more than SG_IO passes here, like
  # WriteSame16 at 65536 blocks; run it over iSCSI to include it.)
  for suite in Inquiry CompareAndWrite WriteSame16 Unmap GetLBAStatus; do
    out=$(timeout 300 iscsi-test-cu --dataloss -n -t "ALL.$suite" "${SD[file]}" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E 'FAILED|\.c:[0-9]+|Run Summary|^ *tests|^ *asserts' | sed "s/^/@@LOG conformance_$suite /"
    result "conf_${suite}_rc" "$rc"
    result "conf_${suite}_ran" "$(awk '$1=="tests"{print $3}' <<<"$out")"
    result "conf_${suite}_failed" "$(awk '$1=="tests"{print $5}' <<<"$out")"
  done
else
  result conf_tool missing
fi

# -- 2. persistent reservations from two I_T nexuses --------------------------------
# The ram LUN again, through a second tcm_loop target (its own SCSI host and nexus).
A=${SD[ram]:-}
if B=$(LOOP_WWN=naa.5001405aa0000011 LOOP_NEXUS=naa.5001405aa0000012 loop_export wsram 0); then
  result pr_export "$B"
else
  result pr_export fail; B=
fi
# pr_write DEV: one WRITE(16) of a zero block at LBA 0 -> ok | conflict | other
pr_write() { local out
  head -c 512 /dev/zero > /tmp/blk
  sg_turs "$1" >/dev/null 2>&1; sg_turs "$1" >/dev/null 2>&1   # consume unit attentions
  out=$(sg_raw -s 512 -i /tmp/blk "$1" 8a 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 2>&1)
  if [ $? = 0 ]; then echo ok; elif grep -qi 'reservation conflict' <<<"$out"; then echo conflict
  else printf '%s\n' "$out" | sed 's/^/@@LOG pr_write /' >&2; echo other; fi; }
# (a preempted nexus first sees REGISTRATIONS PREEMPTED: TEST UNIT READY takes it)
keys() { turs2 "$1"; sg_persist --in --read-keys "$1" 2>&1 | grep -o '0x[0-9a-f]*$' | grep -v '^0x0$' | sort | tr '\n' ' ' | sed 's/ $//'; }
holder() { turs2 "$1"; sg_persist --in --read-reservation "$1" 2>&1 | sed -n 's/.*Key=\(0x[0-9a-f]*\).*/\1/p' | head -1; }
prtype() { turs2 "$1"; sg_persist --in --read-reservation "$1" 2>&1 | sed -n 's/.*scope:.*type: *\(.*\)$/\1/p' | head -1; }
if [ -b "$A" ] && [ -b "$B" ]; then
  turs2 "$A"; turs2 "$B"
  check pr_register_a sg_persist --out --register --param-sark=0xaaaa "$A"
  check pr_register_b sg_persist --out --register --param-sark=0xbbbb "$B"
  result pr_keys "$(keys "$A")"
  check pr_reserve_a sg_persist --out --reserve --param-rk=0xaaaa --prout-type=1 "$A"
  result pr_holder "$(holder "$B")"
  result pr_type "$(prtype "$B")"
  result pr_write_a "$(pr_write "$A")"
  result pr_write_b "$(pr_write "$B")"
  check pr_preempt_b sg_persist --out --preempt --param-rk=0xbbbb --param-sark=0xaaaa --prout-type=1 "$B"
  result pr_keys_after "$(keys "$B")"
  result pr_holder_after "$(holder "$A")"
  result pr_write_a_after "$(pr_write "$A")"
  result pr_write_b_after "$(pr_write "$B")"
  check pr_clear sg_persist --out --clear --param-rk=0xbbbb "$B"
  result pr_keys_cleared "$(keys "$A")"
fi

finish
