import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_GROUPS, readAluaConfig, setAluaState } from '../../src/lio/alua-configfs.js';
import { type FakeConfigfs, fakeAluaConfigfs, loopPort, writeGroup } from './fake-alua.js';

let fake: FakeConfigfs | undefined;
afterEach(() => {
  if (fake) rmSync(fake.root, { recursive: true, force: true });
  fake = undefined;
});

describe('readAluaConfig', () => {
  it('reads the user-made groups, not default_tg_pt_gp, and takes the enabled port as local', async () => {
    fake = fakeAluaConfigfs([
      { name: 'gw-a', id: 1, state: 0, ports: [{ fabric: 'iscsi', wwn: 'iqn.2003-01.org.x:gw', tpgt: 1, lun: 0, relativePortId: 1, protocolId: 5, enabled: true }] },
      { name: 'gw-b', id: 2, state: 1, type: 'Implicit and Explicit', ports: [{ fabric: 'iscsi', wwn: 'iqn.2003-01.org.x:gw', tpgt: 2, lun: 0, relativePortId: 2, protocolId: 5, enabled: false }] },
    ]);
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups.map((g) => [g.name, g.id, g.state, g.accessType, g.relativePortIds])).toEqual([
      ['gw-a', 1, 0, 'implicit', [1]],
      ['gw-b', 2, 1, 'implicit and explicit', [2]],
    ]);
    expect(config.groups[0]!.supportedStates).toBe(0xcf); // all but LBA dependent
    expect(config.local).toEqual({ groupId: 1, relativePortId: 1, protocolId: 5 });
    expect(config.localGroup?.name).toBe('gw-a');
    expect(config.ambiguous).toBe(false);
  });

  it('counts a port without an enable switch (tcm_loop) as enabled', async () => {
    fake = fakeAluaConfigfs([{ name: 'loop', id: 7, ports: [loopPort('naa.5001405aa0000001', 4)] }]);
    expect((await readAluaConfig(fake.deviceDir, fake.root)).local).toEqual({ groupId: 7, relativePortId: 4, protocolId: 6 });
  });

  it('no user-made group (or no alua directory at all): no groups, no local port', async () => {
    fake = fakeAluaConfigfs([]);
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups).toEqual([]);
    expect(config.local).toBeUndefined();
    rmSync(join(fake.deviceDir, 'alua'), { recursive: true });
    expect((await readAluaConfig(fake.deviceDir, fake.root)).groups).toEqual([]);
  });

  it('a group with no member ports is reported without a local port', async () => {
    fake = fakeAluaConfigfs([{ name: 'empty', id: 3, ports: [] }]);
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups.map((g) => g.id)).toEqual([3]);
    expect(config.local).toBeUndefined();
  });

  it('enabled ports in two groups: the first group is local and the layout is flagged ambiguous', async () => {
    fake = fakeAluaConfigfs([
      { name: 'b', id: 2, ports: [loopPort('naa.5001405aa0000002', 2)] },
      { name: 'a', id: 1, ports: [loopPort('naa.5001405aa0000001', 1)] },
    ]);
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.localGroup?.name).toBe('a');
    expect(config.ambiguous).toBe(true);
  });

  it('leaves out a malformed group (bad state, type or id) and keeps the rest', async () => {
    fake = fakeAluaConfigfs([
      { name: 'good', id: 1, ports: [loopPort('naa.5001405aa0000001', 1)] },
      { name: 'badstate', id: 2, state: 7, ports: [] },
      { name: 'badtype', id: 3, type: 'Sideways', ports: [] },
    ]);
    writeGroup(fake.deviceDir, { name: 'badid', id: 70000, ports: [] });
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups.map((g) => g.name)).toEqual(['good']);
  });

  it('skips member lines that are not fabric/wwn/tpgt_N/lun_M (no path outside the target tree)', async () => {
    fake = fakeAluaConfigfs([{ name: 'g', id: 1, ports: [loopPort('naa.5001405aa0000001', 1)] }]);
    const members = join(fake.deviceDir, 'alua', 'g', 'members');
    writeFileSync(members, `../../etc/tpgt_1/lun_0\nloopback/../x/tpgt_1/lun_0\n${readFileSync(members, 'utf8')}`);
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups[0]!.relativePortIds).toEqual([1]);
  });

  it(`reports at most ${MAX_GROUPS} groups and says so`, async () => {
    fake = fakeAluaConfigfs(Array.from({ length: MAX_GROUPS + 2 }, (_, i) => ({ name: `g${String(i).padStart(2, '0')}`, id: i + 1, ports: [] })));
    const config = await readAluaConfig(fake.deviceDir, fake.root);
    expect(config.groups.length).toBe(MAX_GROUPS);
    expect(config.truncated).toBe(true);
  });
});

describe('setAluaState', () => {
  it('writes the group state, and refuses a group name that is a path', async () => {
    fake = fakeAluaConfigfs([{ name: 'gw-a', id: 1, ports: [] }]);
    await setAluaState(fake.deviceDir, 'gw-a', 1);
    expect(readFileSync(join(fake.deviceDir, 'alua', 'gw-a', 'alua_access_state'), 'utf8')).toBe('1');
    await expect(setAluaState(fake.deviceDir, '../gw-a', 0)).rejects.toThrow(/invalid ALUA group name/);
  });
});
