// Without the rbd addon (built where librbd's headers were missing) an rbd
// LUN fails to open with a message saying how to get it; nothing else breaks.
import { describe, expect, it, vi } from 'vitest';

vi.mock('../../../src/native.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../../src/native.js')>()),
  rbdBinding: () => ({ reason: 'tcmu-ts was built without librbd (build/Release/tcmu_rbd.node missing): install librbd-dev and librados-dev' }),
}));

const { default: rbdHandler } = await import('../../../handlers/rbd/index.js');
const { ConfigError } = await import('../../../src/backstore/config-error.js');
const { openContext } = await import('../../backstore/context.js');

describe('rbd handler without librbd', () => {
  it('refuses to open with the reason, as a config error', async () => {
    const open = rbdHandler.open('rbd/disk0', openContext());
    await expect(open).rejects.toThrow(ConfigError);
    await expect(rbdHandler.open('rbd/disk0', openContext())).rejects.toThrow(/built without librbd.*librbd-dev/);
  });

  it('still checks the dev_config first', async () => {
    await expect(rbdHandler.open('rbd', openContext())).rejects.toThrow(/not POOL\/IMAGE/);
  });
});
