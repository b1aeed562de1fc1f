# Guest scenario: qcow2's own LUKS encryption served through the real kernel.
#   base    qemu-img convert of a raw pattern into an encrypted qcow2 (key k2);
#   ovl     `tcmu-ts image create --format qcow2 --encrypt luks --backing base`
#           (key k1), served as `qcow2/OVL;key=k1;backing_key=k2` on tcm_loop:
#           the base's pattern reads through the encrypted chain; mkfs + tree
#           copy + fio verify through the LUN; the whole LUN read back raw;
#   qemu    with the runner stopped: qemu-img check of the overlay and
#           qemu-img compare (both keys) against the raw read-back;
#   wrong   the overlay with the base's key: refused with "no keyslot
#           matches" naming the LUN; the overlay unchanged byte for byte.
# Sourced after guest-lib.sh; asserted in qcow2-luks-lun.test.ts.
set -u
S=/mnt/scratch/qluks
KD=$S/keys
MiB=1048576
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
mkdir -p $S $KD && chmod 0700 $KD
printf 'top-%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $KD/k1
printf 'base-%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $KD/k2
chmod 0600 $KD/k1 $KD/k2
cat > $S/tcmu-ts.toml <<TOML
[daemon]
key_dir = "$KD"
control_socket = "$S/control.sock"
TOML
BASE=$S/base.qcow2
OVL=$S/ovl.qcow2
SIZE=$((64 * MiB))
sum_of() { dd if="$1" bs=1M count="$2" iflag=direct status=none | sha256sum | cut -d' ' -f1; }
secrets="--object secret,id=s1,file=$KD/k1 --object secret,id=s2,file=$KD/k2"
ovl_opts="driver=qcow2,file.filename=$OVL,encrypt.key-secret=s1,backing.encrypt.key-secret=s2"

head -c $((4 * MiB)) /dev/urandom > $S/pattern
result pattern "$(sha256sum < $S/pattern | cut -d' ' -f1)"
truncate -s $SIZE $S/pattern.raw && dd if=$S/pattern of=$S/pattern.raw conv=notrunc status=none
check base_create qemu-img convert -f raw -O qcow2 --object secret,id=s2,file=$KD/k2 \
  -o encrypt.format=luks,encrypt.key-secret=s2,encrypt.iter-time=50 $S/pattern.raw $BASE
check ovl_create $TS image create $OVL --format qcow2 --size $SIZE --backing $BASE --backing-format qcow2 \
  --encrypt luks --key-file $KD/k1 --pbkdf2-iterations 20000
result ovl_encrypted "$(qemu-img info --output=json $OVL | grep -c '"encrypted": true')"

uio=$(tcmu_create ql0 "qcow2/$OVL;key=k1;backing_key=k2" $SIZE) && result lun_create "$uio" || result lun_create fail
if RUNNER_TIMEOUT=240 runner_start --config $S/tcmu-ts.toml; then result runner ok; else result runner fail; dump_log runner "$RUNNER_LOG" 30; exit 1; fi

if sd=$(loop_export ql0 0); then
  result export "$sd"
  result base_sum "$(sum_of $sd 4)"
  ext4_roundtrip "$sd" /mnt/qluks 20
  mount "$sd" /mnt/qluks && check fio fio --name=verify --filename=/mnt/qluks/fio.dat --size=16M --rw=randwrite \
    --bsrange=4k-256k --iodepth=8 --ioengine=libaio --direct=1 --verify=crc32c --verify_fatal=1 --do_verify=1
  sync; umount /mnt/qluks
  echo 3 > /proc/sys/vm/drop_caches
  check readback dd if="$sd" of=$S/lun.raw bs=1M iflag=direct status=none
else result export fail; fi

# wrong key for the overlay (the base's): refused, overlay untouched
OVL_BEFORE=$(sha256sum < $OVL | cut -d' ' -f1)
if timeout 120 bash -c ". $TCMU_TS_ROOT/test/kernel/guest-lib.sh; tcmu_create wrong0 'qcow2/$OVL;key=k2' $SIZE" >/dev/null 2>&1
then result wrong_lun accepted; else result wrong_lun refused; fi
rmdir $CFG/core/user_1/wrong0 2>/dev/null
l=$(grep '"level":50' "$RUNNER_LOG" | grep -F "user_1/wrong0" | grep -F "no keyslot matches")
if [ -n "$l" ]; then result wrong_log ok; printf '%s\n' "$l" | head -1 | cut -c1-600 | sed "s/^/@@LOG wrong_log /"; else result wrong_log fail; fi
result wrong_unchanged "$([ "$(sha256sum < $OVL | cut -d' ' -f1)" = "$OVL_BEFORE" ] && echo yes || echo no)"

teardown_all && result teardown ok || result teardown fail
runner_stop
result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"

# -- QEMU's view of what the LUN wrote --------------------------------------------------------
out=$(qemu-img check $secrets --image-opts $ovl_opts 2>&1); rc=$?
result qemu_check "$rc"; [ $rc -eq 0 ] || printf '%s\n' "$out" | head -5 | sed 's/^/@@LOG qemu_check /'
out=$(qemu-img compare $secrets --image-opts $ovl_opts driver=raw,file.filename=$S/lun.raw 2>&1); rc=$?
result qemu_compare "$rc"; [ $rc -eq 0 ] || printf '%s\n' "$out" | head -5 | sed 's/^/@@LOG qemu_compare /'
dump_log runner "$RUNNER_LOG" 20
