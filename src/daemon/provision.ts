/**
 * Make the kernel match the config file: create the TCMU devices of
 * configured LUNs that do not exist yet and export them as configured.
 * Runs inside the daemon after it listens for netlink events, because
 * `enable` and the LUN link wait for this very process to answer.
 */
import type { Logger } from 'pino';
import type { LunConfig } from '../config/config.js';
import { createTcmuDevice, exportIscsi, exportLoop, listTcmuLuns } from '../lio/export.js';
import { DEFAULT_KEY_DIR, readChapKey } from '../config/chap-keys.js';
import { findOtherRunners } from './coexist.js';

/** `keyDir`: where `chap = "NAME"` key files live; secrets are read here, passed to configfs, never logged. */
export async function provisionLuns(luns: readonly LunConfig[], log: Logger, keyDir = DEFAULT_KEY_DIR): Promise<void> {
  const existing = new Map((await listTcmuLuns()).map((l) => [l.name, l]));
  // Another runner (tcmu-runner) would refuse our devices before we answer: the kernel must wait for nobody (see coexist.ts).
  const netlinkReply = findOtherRunners().length === 0;
  await Promise.all(
    luns.map(async (lun) => {
      const l = log.child({ lun: lun.name });
      try {
        const devConfig = lun.devConfig; // checked by the config loader (one dev_config parser)
        const current = existing.get(lun.name);
        if (current && current.devConfig !== devConfig) {
          l.warn({ configured: devConfig, kernel: current.devConfig }, 'LUN exists with a different dev_config; leaving it as it is');
        }
        if (!current) {
          await createTcmuDevice({ name: lun.name, devConfig, size: lun.size, blockSize: lun.blockSize, netlinkReply });
          l.info({ devConfig, ...(netlinkReply ? {} : { nlReplySupported: -1 }) }, 'LUN created from config');
        }
        if ((current?.exports.length ?? 0) === 0) {
          const completionAffinity = lun.completionAffinity;
          if (lun.export === 'loop') l.info({ wwn: await exportLoop(lun.name, { completionAffinity }) }, 'LUN exported on tcm_loop');
          if (lun.export === 'iscsi') {
            if (lun.portal === undefined) throw new Error('an iSCSI export needs a portal'); // the config loader requires it
            const chap = lun.chap === undefined ? undefined : readChapKey(keyDir, lun.chap);
            const iqn = await exportIscsi(lun.name, { iqn: lun.iqn, portal: lun.portal, initiators: lun.initiators, chap, completionAffinity });
            // Who may log in and how, never the secret.
            l.info({ iqn, portal: lun.portal, initiators: lun.initiators, chapKey: lun.chap ?? null }, 'LUN exported on iSCSI');
          }
        }
      } catch (err) {
        l.error({ err }, 'cannot provision LUN from config');
      }
    }),
  );
}
