# Guest scenario: encrypted LUNs served by `tcmu-ts serve` as the stack
# `crypt/;key=NAME>file/PATH` on tcm_loop (acceptance of the crypt layer):
#   cs_*    cryptsetup luksFormat (LUKS2 argon2id 512, LUKS2 pbkdf2 4096 on a
#           4096-byte LUN, LUKS1), data written through dm-crypt on a loop
#           device; the initiator reads exactly that data through the LUN;
#   ts_*    `tcmu-ts image create --format crypt --encrypt luks2`, mkfs + tree
#           copy + fio verify through the LUN; with the LUN removed, dm-crypt
#           opens the file: fsck clean, same tree checksum;
#   wrong_* a wrong key: the LUN is refused, the log names the LUN and says
#           "no keyslot matches", the image is unchanged; a key file others
#           can read: refused;
#   leak_*  the key never appears in the runner log or `tcmu-ts status`.
# Sourced after guest-lib.sh; asserted in crypt-lun.test.ts.
set -u
S=/mnt/scratch/crypt
KD=$S/keys
MiB=1048576
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
SOCK=$S/control.sock
export DM_DISABLE_UDEV=1
mkdir -p $S $KD && chmod 0700 $KD
# Printable keys (so a leak is greppable), with the trailing newline cryptsetup --key-file keeps.
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$KEY" > $KD/k1
printf 'not-the-key-%s\n' "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $KD/wrong
cp $KD/k1 $KD/open && chmod 0644 $KD/open
chmod 0600 $KD/k1 $KD/wrong
cat > $S/tcmu-ts.toml <<TOML
[daemon]
key_dir = "$KD"
control_socket = "$SOCK"
TOML

for m in dm_mod dm_crypt loop xts aesni_intel aes_generic; do modprobe -d "$TCMU_VM_KDIR" $m 2>/dev/null; done

finish() { finish_scenario "${1:-0}" 30; }
# refused_line KEY NEEDLE...: KEY=ok if one runner log line at error level has every NEEDLE
refused_line() { local k="$1" l; shift; l=$(grep '"level":50' "$RUNNER_LOG" 2>/dev/null)
  for n in "$@"; do l=$(grep -F -- "$n" <<<"$l"); done
  if [ -n "$l" ]; then result "$k" ok; printf '%s\n' "$l" | head -1 | cut -c1-600 | sed "s/^/@@LOG $k /"; else result "$k" fail; fi; }
sum_of() { dd if="$1" bs=1M count="$2" iflag=direct status=none | sha256sum | cut -d' ' -f1; }

# -- cryptsetup -> tcmu-ts -----------------------------------------------------------------------
head -c $((4 * MiB)) /dev/urandom > $S/pattern
result pattern "$(sha256sum < $S/pattern | cut -d' ' -f1)"
cs_image() { # NAME FLAGS...: a 80 MiB container, the pattern written through dm-crypt
  local img=$S/$1.img loop; shift
  truncate -s $((80 * MiB)) $img
  cryptsetup luksFormat -q "$@" --key-file $KD/k1 $img || return 1
  loop=$(losetup -f --show $img) || return 1
  cryptsetup open --key-file $KD/k1 $loop cr || { losetup -d $loop; return 1; }
  dd if=$S/pattern of=/dev/mapper/cr bs=1M oflag=direct status=none; local rc=$?
  sync; cryptsetup close cr; losetup -d $loop; return $rc; }
cs_image cs512 --type luks2 --pbkdf argon2id --pbkdf-memory 32768 --iter-time 100 --sector-size 512 && result cs512_image ok || result cs512_image fail
cs_image cs4096 --type luks2 --pbkdf pbkdf2 --iter-time 100 --sector-size 4096 && result cs4096_image ok || result cs4096_image fail
cs_image csl1 --type luks1 --iter-time 100 && result csl1_image ok || result csl1_image fail
WRONG_BEFORE=$(sha256sum < $S/cs512.img | cut -d' ' -f1)

# ts: an image made by tcmu-ts itself (pbkdf2: argon2's default 256 MiB is slow under emulation)
if $TS image create $S/ts.img --format crypt --size $((96 * MiB)) --encrypt luks2 --key-file $KD/k1 --kdf pbkdf2 > $S/create.out 2>&1
then result ts_create ok; else result ts_create fail; dump_log ts_create $S/create.out; fi
$TS image info $S/ts.img > $S/info.out 2>&1 && result ts_info "$(grep -E '^(format|sectorSize):' $S/info.out | tr '\n' ' ')"

uio=$(tcmu_create cs512 "crypt/;key=k1>file/$S/cs512.img" $((64 * MiB))) && result cs512_create "$uio" || result cs512_create fail
uio=$(tcmu_create cs4096 "crypt/;key=k1>file/$S/cs4096.img" $((64 * MiB)) hw_block_size=4096) && result cs4096_create "$uio" || result cs4096_create fail
uio=$(tcmu_create csl1 "crypt/;key=k1>file/$S/csl1.img" $((64 * MiB))) && result csl1_create "$uio" || result csl1_create fail
uio=$(tcmu_create ts0 "crypt/;key=k1>file/$S/ts.img" $((96 * MiB))) && result ts_lun_create "$uio" || result ts_lun_create fail
if RUNNER_TIMEOUT=240 runner_start --config $S/tcmu-ts.toml; then result runner ok; else result runner fail; finish 1; fi

n=0
for name in cs512 cs4096 csl1; do
  if sd=$(loop_export $name $n); then
    result ${name}_export "$sd"
    result ${name}_block "$(cat /sys/block/${sd#/dev/}/queue/logical_block_size)"
    result ${name}_sum "$(sum_of $sd 4)"
  else result ${name}_export fail; fi
  n=$((n + 1))
done

# -- tcmu-ts -> cryptsetup: filesystem and fio through the LUN --------------------------------------
if sd=$(loop_export ts0 3); then
  result ts_export "$sd"
  ext4_roundtrip "$sd" /mnt/cryptfs 20
  mount "$sd" /mnt/cryptfs && result fs_sum_lun "$(tree_sum /mnt/cryptfs/tree)" && umount /mnt/cryptfs
  # The filesystem spans the LUN: fio verifies a file on it (O_DIRECT through the layer).
  mount "$sd" /mnt/cryptfs && check fio fio --name=verify --filename=/mnt/cryptfs/fio.dat --size=16M --rw=randwrite \
    --bsrange=4k-256k --iodepth=8 --ioengine=libaio --direct=1 --verify=crc32c --verify_fatal=1 --do_verify=1
  result fio_sum "$(sha256sum < /mnt/cryptfs/fio.dat | cut -d' ' -f1)"
  sync; umount /mnt/cryptfs
else result ts_export fail; fi

# -- a wrong key and an open key file -------------------------------------------------------------
if timeout 120 bash -c ". $TCMU_TS_ROOT/test/kernel/guest-lib.sh; tcmu_create wrong0 'crypt/;key=wrong>file/$S/cs512.img' $((64 * MiB))" >/dev/null 2>&1
then result wrong_lun accepted; else result wrong_lun refused; fi
rmdir $CFG/core/user_1/wrong0 2>/dev/null
refused_line wrong_log "user_1/wrong0" "no keyslot matches"
result wrong_image_unchanged "$([ "$(sha256sum < $S/cs512.img | cut -d' ' -f1)" = "$WRONG_BEFORE" ] && echo yes || echo no)"
if timeout 60 bash -c ". $TCMU_TS_ROOT/test/kernel/guest-lib.sh; tcmu_create open0 'crypt/;key=open>file/$S/cs512.img' $((64 * MiB))" >/dev/null 2>&1
then result open_key_lun accepted; else result open_key_lun refused; fi
rmdir $CFG/core/user_1/open0 2>/dev/null
refused_line open_key_log "user_1/open0" "open to group or others"

# -- no key in the log or status ---------------------------------------------------------------------
$TS status --socket $SOCK > $S/status.out 2>&1; result status_rc $?
result leak_log "$(grep -cF "$KEY" "$RUNNER_LOG")"
result leak_status "$(grep -cF "$KEY" $S/status.out)"

teardown_all && result teardown ok || result teardown fail
runner_stop
result leak_log_final "$(grep -cF "$KEY" "$RUNNER_LOG")"

# -- the LUN is gone: dm-crypt opens what tcmu-ts wrote ---------------------------------------------------
loop=$(losetup -f --show $S/ts.img)
if cryptsetup open --key-file $KD/k1 $loop crts; then
  result dm_open ok
  fsck.ext4 -fn /dev/mapper/crts > $S/fsck.out 2>&1; result dm_fsck $?
  mkdir -p /mnt/dmfs && mount -o ro /dev/mapper/crts /mnt/dmfs && {
    result dm_tree_sum "$(tree_sum /mnt/dmfs/tree)"
    result dm_fio_sum "$(sha256sum < /mnt/dmfs/fio.dat | cut -d' ' -f1)"
    umount /mnt/dmfs; }
  cryptsetup close crts
else result dm_open fail; fi
losetup -d $loop
result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
exit 0
