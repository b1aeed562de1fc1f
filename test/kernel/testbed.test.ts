// The test bed itself: boots, loads the target modules, drives configfs, and
// reports hung and panicking guests as failures (not as passes or hangs).
// None of this needs the tcmu-ts runner.
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = String.raw`
set -u
result kernel "$(uname -r)"
result configfs "$(cat $CFG/version 2>&1)"
result modules "$(awk '{print $1}' /proc/modules | grep -E '^(target_core_user|tcm_loop|target_core_file|iscsi_target_mod|uio)$' | sort | tr '\n' ' ')"

# A TCMU device: no runner is needed to create it; the kernel makes a uio device.
uio=$(tcmu_create tb1 file//mnt/scratch/tb1.img 16777216) && result uio "$uio"
s=$(uio_sysfs tb1) && {
  result uio_name "$(cat $s/name)"
  result map0_size "$(cat $s/maps/map0/size)"
}

# The in-kernel fileio backstore on tcm_loop: proves loop_export without a runner.
truncate -s 64M /mnt/scratch/ref.img
fileio_create ref /mnt/scratch/ref.img 67108864 && result fileio ok
sd=$(loop_export ref 0) && {
  result loop_dev "$sd"
  result loop_vendor "$(sg_inq "$sd" | sed -n 's/^ *Vendor identification: *//p')"
  result loop_bytes "$(blockdev --getsize64 "$sd")"
}
# iSCSI on 127.0.0.1:3260, probed with whatever initiator the guest has.
ini=$(iscsi_export ref 0) && result iscsi_initiator "$ini"
if [ "$ini" = libiscsi ]; then
  result iscsi_inq_vendor "$(iscsi-inq "iscsi://127.0.0.1/$ISCSI_IQN/0" 2>&1 | sed -n 's/^Vendor: *//p')"
fi

teardown_all && result teardown ok
result leftover_uio "$(ls /sys/class/uio | wc -l)"
`;

describeKernel('kernel test bed', () => {
  let run: GuestRun;
  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 300 });
    console.log(`[testbed] boot to ready ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('boots the guest and runs the script to the end', () => {
    expect(run.ok, explain(run, 'guest run failed')).toBe(true);
    expect(one(run, 'kernel')).toMatch(/-amd64$/);
    expect(one(run, 'configfs')).toMatch(/Target Engine Core ConfigFS Infrastructure/);
    expect(one(run, 'modules')?.split(' ').filter(Boolean).sort()).toEqual(
      ['iscsi_target_mod', 'target_core_file', 'target_core_user', 'tcm_loop', 'uio']);
  });

  it('creates a TCMU file device whose uio name and map size match the kernel protocol', () => {
    expect(one(run, 'uio'), explain(run, 'no uio device')).toMatch(/^\/dev\/uio\d+$/);
    expect(one(run, 'uio_name')).toBe('tcm-user/1/tb1/file//mnt/scratch/tb1.img');
    // mailbox+ring (8 MiB) + data area (1 GiB): 0x40800000 on 6.1 defaults
    expect(Number(one(run, 'map0_size'))).toBe(0x40800000);
  });

  it('exports an in-kernel fileio LUN on tcm_loop and iSCSI, and tears everything down', () => {
    expect(one(run, 'fileio'), explain(run, 'fileio')).toBe('ok');
    expect(one(run, 'loop_dev'), explain(run, 'tcm_loop disk')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(one(run, 'loop_vendor')).toBe('LIO-ORG');
    expect(one(run, 'loop_bytes')).toBe(String(64 << 20));
    const ini = one(run, 'iscsi_initiator');
    expect(['iscsiadm', 'libiscsi', 'none']).toContain(ini);
    if (ini === 'libiscsi') expect(one(run, 'iscsi_inq_vendor')).toBe('LIO-ORG');
    expect(one(run, 'teardown'), explain(run, 'teardown')).toBe('ok');
    expect(one(run, 'leftover_uio')).toBe('0');
  });
});

describeKernel('kernel test bed failure detection', () => {
  it('reports a hung guest (killed at the timeout) as a failure with the console tail', async () => {
    const run = await runGuestScript('echo "about to hang"; sleep 600', { timeoutSec: 45 });
    expect(run.ok).toBe(false);
    expect(run.status).toBe('timeout');
    expect(run.reason).toMatch(/hung/);
    expect(run.consoleTail).toContain('about to hang');
  });

  it('reports a guest kernel panic as a failure with the kernel messages', async () => {
    const run = await runGuestScript('echo "about to panic"; echo c > /proc/sysrq-trigger; sleep 600', { timeoutSec: 120 });
    expect(run.ok).toBe(false);
    expect(run.status).toBe('panic');
    expect(run.consoleTail).toContain('Kernel panic - not syncing');
  });

  it('reports a failing guest script with its exit code', async () => {
    const run = await runGuestScript('result before fail 1; exit 3', { timeoutSec: 120 });
    expect(run.ok).toBe(false);
    expect(run.status).toBe('fail');
    expect(run.exitCode).toBe(3);
    expect(one(run, 'before')).toBe('fail 1');
  });
});
