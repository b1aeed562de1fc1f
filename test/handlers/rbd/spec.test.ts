import { describe, expect, it } from 'vitest';
import { connectOptions, parseRbdSpec, radosSettings } from '../../../handlers/rbd/spec.js';
import { ConfigError } from '../../../src/backstore/config-error.js';

/** What every LUN's rados settings have, whatever its options: librbd copies writes. */
const COPY = { rbd_disable_zero_copy_writes: 'true' };
/** What dispatch=inline (the default) adds to every LUN's rados settings. */
const INLINE = { rbd_non_blocking_aio: 'false', objecter_inflight_ops: '1048576', objecter_inflight_op_bytes: '4294967296' };

describe('rbd dev_config', () => {
  it('parses POOL/IMAGE with defaults', () => {
    expect(parseRbdSpec('rbd/disk0', {})).toEqual({
      pool: 'rbd', image: 'disk0', snap: '', conf: '/etc/ceph/ceph.conf', id: 'admin', keyring: undefined, osdOpTimeout: 30, cache: 'none', threadPolicy: 'batch',
      dispatch: 'inline',
    });
  });

  it('parses a snapshot and every option', () => {
    const spec = parseRbdSpec('pool1/img.a@snap-1', { conf: '/x/ceph.conf', id: 'iscsi', keyring: '/x/k', osd_op_timeout: '5', thread_policy: 'normal' });
    expect(spec).toMatchObject({ pool: 'pool1', image: 'img.a', snap: 'snap-1', conf: '/x/ceph.conf', id: 'iscsi', keyring: '/x/k', osdOpTimeout: 5, threadPolicy: 'normal' });
    expect(radosSettings(spec)).toEqual({
      rbd_cache: 'false', ...COPY, keyring: '/x/k', rados_osd_op_timeout: '5', rados_mon_op_timeout: '5', client_mount_timeout: '5', ...INLINE,
    });
  });

  it('connectOptions carries the connection, its rados settings and the thread policy', () => {
    const spec = parseRbdSpec('pool1/img', { conf: '/x/ceph.conf', id: 'iscsi', osd_op_timeout: '0' });
    expect(connectOptions(spec)).toEqual({ conf: '/x/ceph.conf', id: 'iscsi', settings: { rbd_cache: 'false', ...COPY, ...INLINE }, pool: 'pool1', threadPolicy: 'batch' });
  });

  it('osd_op_timeout=0 sets no timeout', () => {
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0' }))).toEqual({ rbd_cache: 'false', ...COPY, ...INLINE });
  });

  it('dispatch: inline by default (librbd dispatches on the submitting thread, the Objecter never throttles it); queued is librbd\'s own way', () => {
    expect(parseRbdSpec('p/i', {}).dispatch).toBe('inline');
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0', dispatch: 'inline' }))).toEqual({ rbd_cache: 'false', ...COPY, ...INLINE });
    expect(parseRbdSpec('p/i', { dispatch: 'queued' }).dispatch).toBe('queued');
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0', dispatch: 'queued' }))).toEqual({ rbd_cache: 'false', ...COPY, rbd_non_blocking_aio: 'true' });
  });

  it('cache: librbd cache off by default (nothing acknowledged lives only in the daemon), writethrough and writeback on request; librbd always copies writes (its zero-copy writes hang on a failed write)', () => {
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0', cache: 'none' }))).toEqual({ rbd_cache: 'false', ...COPY, ...INLINE });
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0', cache: 'writethrough' }))).toEqual({ rbd_cache: 'true', ...COPY, rbd_cache_max_dirty: '0', ...INLINE });
    expect(radosSettings(parseRbdSpec('p/i', { osd_op_timeout: '0', cache: 'writeback' }))).toEqual({
      rbd_cache: 'true', ...COPY, rbd_cache_writethrough_until_flush: 'false', ...INLINE,
    });
  });

  it.each([
    ['', 'not POOL/IMAGE'],
    ['rbd', 'not POOL/IMAGE'],
    ['rbd/', 'not POOL/IMAGE'],
    ['/disk0', 'not POOL/IMAGE'],
    ['rbd/a/b', 'not POOL/IMAGE'],
    ['rbd/disk0@', 'snapshot name'],
    ['rbd/di sk', 'image name'],
    ['r:b/disk', 'pool name'],
  ])('refuses config %j', (config, message) => {
    expect(() => parseRbdSpec(config, {})).toThrow(ConfigError);
    expect(() => parseRbdSpec(config, {})).toThrow(message);
  });

  it.each([
    [{ bogus: '1' }, 'unknown option "bogus"'],
    [{ conf: 'ceph.conf' }, 'absolute path'],
    [{ keyring: 'k' }, 'absolute path'],
    [{ id: 'client.admin' }, 'without "client."'],
    [{ osd_op_timeout: '-1' }, 'whole number'],
    [{ osd_op_timeout: '1.5' }, 'whole number'],
    [{ osd_op_timeout: '99999' }, 'whole number'],
    [{ cache: 'write-through' }, 'cache "write-through" must be none, writethrough or writeback'],
    [{ thread_policy: 'fifo' }, 'thread_policy "fifo" must be batch or normal'],
    [{ dispatch: 'thread' }, 'dispatch "thread" must be inline or queued'],
  ])('refuses options %j', (options, message) => {
    expect(() => parseRbdSpec('rbd/disk0', options)).toThrow(message);
  });
});
