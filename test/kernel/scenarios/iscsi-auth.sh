# Guest scenario: iSCSI export access control, end to end. `tcmu-ts serve -c`
# exports a file LUN on 127.0.0.1:3260 to one listed initiator with CHAP
# (secret from a 0600 key file in a 0700 key directory). libiscsi (iscsi-inq,
# iscsi-readcapacity16, iscsi-perf, iscsi-test-cu) act as initiators: the
# listed initiator with the right secret gets in and reads and writes;
# a wrong secret, no CHAP at all, and an unlisted initiator name are refused.
# Also: configs relying on the old defaults are refused with what to add, the
# secret appears in no log or status, the control socket is 0600, and the CLI
# needs an explicit --initiator any for demo mode.
# Sourced after guest-lib.sh; asserted in iscsi-auth.test.ts.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
IMG=$S/auth0.img
KEYS=$S/keys
IQN=iqn.2026-11.io.tcmu-ts.test:auth0
GOOD_INI=iqn.2026-11.io.tcmu-ts.test:allowed
BAD_INI=iqn.2026-11.io.tcmu-ts.test:intruder
USER=web1
SECRET=Right-Secret-0123
WRONG=Wrong-Secret-4567
URL_GOOD="iscsi://$USER%$SECRET@127.0.0.1:3260/$IQN/0"
URL_WRONG="iscsi://$USER%$WRONG@127.0.0.1:3260/$IQN/0"
URL_NOCHAP="iscsi://127.0.0.1:3260/$IQN/0"

finish() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result secret_in_runner_log "$(grep -c -- "$SECRET" "$RUNNER_LOG" 2>/dev/null)"
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 60
}
# login KEY CMD...: run an initiator command; KEY=ok if it succeeded, refused(rc=N) otherwise;
# its output goes to $S/KEY.out and (tail) @@LOG KEY.
login() { local k="$1"; shift; local rc
  timeout 30 "$@" >"$S/$k.out" 2>&1; rc=$?
  tail -n 8 "$S/$k.out" | sed "s/^/@@LOG $k /"
  [ $rc = 0 ] && result "$k" ok || result "$k" "refused(rc=$rc)"
}

# -- the LUN's image: a known 1 MiB pattern at the start ------------------------------
truncate -s 64M $IMG
head -c 1048576 /dev/zero | tr '\0' '\253' | dd of=$IMG conv=notrunc status=none   # 0xab

# -- old-default configs are refused, naming the key and what to add ---------------
cat > $S/old.toml <<TOML
[lun.auth0]
backstore = "file"
path = "$IMG"
size = "64M"
export = "iscsi"
TOML
out=$(timeout 30 $TS serve -c $S/old.toml 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG old_config /'
result old_config_rc "$rc"
result old_config_msg "$(grep -o 'lun.auth0.initiators: missing[^;]*' <<<"$out" | head -1)"

# -- the key directory -------------------------------------------------------------------
mkdir -p $KEYS && chmod 700 $KEYS
printf '%s:%s\n' "$USER" "$SECRET" > $KEYS/web1 && chmod 600 $KEYS/web1
cat > $S/tcmu.toml <<TOML
[daemon]
key_dir = "$KEYS"

[lun.auth0]
backstore = "file"
path = "$IMG"
size = "64M"
export = "iscsi"
iqn = "$IQN"
portal = "127.0.0.1:3260"
initiators = ["$GOOD_INI"]
chap = "web1"
TOML
# a world-readable key stops the daemon before anything is exported
chmod 644 $KEYS/web1
out=$(timeout 30 $TS serve -c $S/tcmu.toml 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG open_key /'
result open_key_rc "$rc"
result open_key_msg "$(grep -o 'lun.auth0.chap: CHAP key file [^ ]* is open to group or others' <<<"$out" | head -1)"
result open_key_leaks "$(grep -c -- "$SECRET" <<<"$out")"
chmod 600 $KEYS/web1

# -- serve and export --------------------------------------------------------------------
if runner_start -c $S/tcmu.toml; then result runner ok; else result runner fail; finish; exit 1; fi
T=$CFG/iscsi/$IQN/tpgt_1
if wait_for 60 grep -qx 1 $T/enable; then result export ok; else result export fail; finish; exit 1; fi
result np "$(ls $T/np)"
result acls "$(ls $T/acls | tr '\n' ' ' | sed 's/ $//')"
result authentication "$(cat $T/attrib/authentication)"
result generate_node_acls "$(cat $T/attrib/generate_node_acls)"
result acl_userid "$(cat $T/acls/$GOOD_INI/auth/userid)"
result control_socket_mode "$(stat -c %a /run/tcmu-ts/control.sock)"
result secret_in_status "$($TS status --json 2>&1 | grep -c -- "$SECRET")"

# -- who gets in -------------------------------------------------------------------------
login good_inq iscsi-inq -i $GOOD_INI "$URL_GOOD"
result good_vendor "$(sed -n 's/^Vendor: *//p' $S/good_inq.out | head -1)"
login good_readcap iscsi-readcapacity16 -s -i $GOOD_INI "$URL_GOOD"
result good_size "$(tail -n 1 $S/good_readcap.out)"
# reads: 2 s of sequential 64 KiB READs (iscsi-perf stops at the first failed one)
login good_read iscsi-perf -i $GOOD_INI -t 2 -b 128 "$URL_GOOD"
result good_read_finished "$(grep -c '^finished' $S/good_read.out)"
# writes: libiscsi's own WRITE(10) conformance test, which must change the image
before=$(sha256sum < $IMG)
login good_write iscsi-test-cu -d -f -s -i $GOOD_INI -t ALL.Write10.Simple "$URL_GOOD"
[ "$(sha256sum < $IMG)" != "$before" ] && result write_landed yes || result write_landed no

login wrong_secret iscsi-inq -i $GOOD_INI "$URL_WRONG"
login no_chap iscsi-inq -i $GOOD_INI "$URL_NOCHAP"
login unlisted_initiator iscsi-inq -i $BAD_INI "$URL_GOOD"
login default_initiator iscsi-inq "$URL_GOOD"

# -- the CLI: same rules; demo mode only when written down -----------------------------
out=$(timeout 60 $TS lun create cli0 --backstore ram --size 16M --export iscsi --portal 127.0.0.1:3261 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG cli_no_initiator /'
result cli_no_initiator_rc "$rc"
result cli_no_initiator_msg "$(grep -c -- '--initiator is required' <<<"$out")"
result cli_no_initiator_made "$(ls -d $CFG/core/user_*/cli0 2>/dev/null | wc -l)"
out=$(timeout 60 $TS lun create cli0 --backstore ram --size 16M --export iscsi --initiator any --portal 127.0.0.1:3261 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG cli_any /'
result cli_any_rc "$rc"
login any_inq iscsi-inq -i $BAD_INI "iscsi://127.0.0.1:3261/iqn.2026-11.io.tcmu-ts:cli0/0"
result any_vendor "$(sed -n 's/^Vendor: *//p' $S/any_inq.out | head -1)"

# demo mode with TPG-wide CHAP: any initiator name, but only with the secret
out=$(timeout 60 $TS lun create cli1 --backstore ram --size 16M --export iscsi --initiator any --chap web1 --key-dir $KEYS --portal 127.0.0.1:3262 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/@@LOG cli_any_chap /'
result cli_any_chap_rc "$rc"
T1=$CFG/iscsi/iqn.2026-11.io.tcmu-ts:cli1/tpgt_1
result any_chap_auth "$(cat $T1/attrib/authentication 2>/dev/null)/$(cat $T1/attrib/generate_node_acls 2>/dev/null)"
login any_chap_good iscsi-inq -i $BAD_INI "iscsi://$USER%$SECRET@127.0.0.1:3262/iqn.2026-11.io.tcmu-ts:cli1/0"
login any_chap_wrong iscsi-inq -i $BAD_INI "iscsi://$USER%$WRONG@127.0.0.1:3262/iqn.2026-11.io.tcmu-ts:cli1/0"
login any_chap_none iscsi-inq -i $BAD_INI "iscsi://127.0.0.1:3262/iqn.2026-11.io.tcmu-ts:cli1/0"
result secret_in_cli_output "$(grep -c -- "$SECRET" <<<"$out")"

finish
