// An rbd LUN through what a gateway meets in production, against the real
// kernel and a real Ceph cluster in one boot: the daemon SIGKILLed and
// restarted 5 times under fio verify load (the new process fences its dead
// predecessor's exclusive lock), snapshots through `tcmu-ts snapshot`, GET
// LBA STATUS, and an OSD outage (ABORTED COMMAND within osd_op_timeout, the
// daemon answering, I/O back once the OSD is). Guest side:
// test/kernel/scenarios/rbd-ha.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { cephMissing, runCephScenario } from './ceph-prereq.js';
import { describeKernel, explain, one, REPO, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/rbd-ha.sh'), 'utf8');
const missing = cephMissing('rbd-ha');

/** osd_op_timeout the scenario gives the LUN, in seconds. */
const OP_TIMEOUT = 15;

describeKernel('rbd LUN: daemon crashes, cluster outage, snapshots', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    // ~12 min on a quiet 2-core host; the guest gets twice that when the host is busy.
    run = await runCephScenario(missing, SCENARIO, 2400);
    console.log(
      `[rbd-ha] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s, cluster start ${r('cluster_sec')}s; ` +
        `kill-to-serving ms: ${r('restart_ms')}; outage read/write: ${r('outage_read')} / ${r('outage_write')}; OSD restart ${r('osd_restart_sec')}s`,
    );
  }, 2460_000);

  it('serves rbd/ha0 (exclusive-lock image) with no write cache by default', () => {
    expect(r('cluster'), why('scripts/ceph.sh start in the guest')).toBe('ok');
    expect(r('features'), why('rbd info features')).toContain('exclusive-lock');
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('create'), why('tcmu-ts lun create --backstore rbd')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('cache_type'), why('cache=none: the initiator sees a write-through disk')).toBe('write through');
  });

  it('is killed 5 times with commands in flight; each new process fences its predecessor and serves again', () => {
    expect(r('kills'), why('kills')).toBe('5');
    expect(r('kills_under_io'), why('kills while the initiator had commands in flight')).toBe('5');
    expect(r('restarts'), why('restarts that served the LUN again')).toBe('5');
    expect(r('fenced'), why("restarts that broke the dead predecessor's exclusive lock")).toBe('5');
  });

  it('loses no acknowledged write: markers, fio verify through every kill, and another client reads what the initiator reads', () => {
    expect(r('markers_written'), why('marker writes (O_DIRECT, no flush)')).toBe('5');
    expect(r('markers_after_restart'), why('marker read right after each restart')).toBe('5');
    expect(r('markers_intact'), why('markers at the end')).toBe('5');
    expect(Number(r('fio_jobs')), why('fio jobs during the kills')).toBeGreaterThanOrEqual(2);
    expect(r('fio_failed'), why('fio jobs with an error or a verify failure')).toBe('0');
    expect(r('lun_sum'), why('dd of the LUN')).toMatch(/^[0-9a-f]{64}$/);
    expect(r('export_sum'), why('rbd export differs from the LUN')).toBe(r('lun_sum'));
  });

  it('GET LBA STATUS: a written object mapped (0), a never written one deallocated (1)', () => {
    expect(r('lba_written'), why('sg_get_lba_status on a marker')).toBe('0');
    expect(r('lba_unwritten'), why('sg_get_lba_status at 1000 MiB')).toBe('1');
  });

  it('tcmu-ts snapshot create/list/revert/delete are RBD snapshots of the image', () => {
    expect(r('snap_create'), why('tcmu-ts snapshot create h0 s1')).toBe('ok');
    expect(r('snap_rbd_ls').trim(), why('rbd snap ls after create')).toBe('s1');
    expect(r('snap_list'), why('tcmu-ts snapshot list --json')).toContain('"name":"s1"');
    expect(r('snap_new_written'), why('new data written after the snapshot')).toBe('yes');
    expect(r('snap_revert'), why('tcmu-ts snapshot revert h0 s1')).toBe('ok');
    expect(r('snap_reverted'), why('the LUN reads the snapshot data after the revert')).toBe('yes');
    expect(r('snap_delete'), why('tcmu-ts snapshot delete h0 s1')).toBe('ok');
    expect(r('snap_after_delete').trim(), why('rbd snap ls after delete')).toBe('');
  });

  it('with the OSD stopped, a read and a write fail with ABORTED COMMAND within osd_op_timeout, and the daemon keeps answering', () => {
    expect(r('osd_stopped'), why('stopping the OSD')).toBe('ok');
    for (const key of ['outage_read', 'outage_write']) {
      const [rc, sec, sense] = r(key).split(' ');
      expect(rc, why(`${key}: sg_raw exit status`)).not.toBe('0');
      expect(sense?.toLowerCase(), why(`${key}: sense key`)).toBe('aborted_command');
      // Not a speed assertion: the bound is the option under test plus the
      // cluster's own op tick (osd_op_timeout is checked once per tick, 5 s).
      expect(Number(sec), why(`${key}: seconds until the command failed`)).toBeLessThan(OP_TIMEOUT * 4);
    }
    expect(r('outage_status'), why('tcmu-ts status during the outage')).toBe('ok');
    expect(r('outage_lun_state'), why('LUN state during the outage')).toBe('"state":"serving"');
  });

  it('recovers once the OSD is back: writes, reads and fio verify pass, nothing hung', () => {
    expect(r('osd_restarted'), why('scripts/ceph.sh start after the outage')).toBe('ok');
    expect(r('after_write'), why('sg_raw WRITE after the OSD returned')).toBe('0');
    expect(r('after_read_back'), why('data written after the outage reads back')).toBe('yes');
    expect(r('after_fio'), why('fio verify after the outage')).toBe('ok');
    expect(r('hung_tasks'), why('hung tasks')).toBe('0');
  });

  it('stops cleanly', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status')).toBe('0');
    expect(run.ok, why('scenario')).toBe(true);
  });
});
