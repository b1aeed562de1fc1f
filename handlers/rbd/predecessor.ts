/**
 * Fencing this LUN's own dead predecessor after a daemon crash.
 *
 * With the image's exclusive-lock feature, the first write of a client takes
 * the lock. When the daemon is killed (SIGKILL, OOM, a crash) and restarted,
 * its old cluster client still owns the lock and still has a watch on the
 * image header until the OSD drops the watch (osd_client_watch_timeout, 30 s
 * by default). librbd only breaks the lock of an owner whose watch is gone,
 * so every write of the new process would wait that long, and the commands
 * the kernel kept in the ring meanwhile would age towards cmd_time_out and
 * the initiator's own timeout.
 *
 * The dead owner is known: the previous process of this daemon, on this
 * host, for this kernel device, wrote its cluster address into the LUN's
 * runtime directory (tmpfs: it does not survive a reboot, after which the
 * old watch has long expired). If that address still owns the lock, the new
 * process breaks the lock with rbd_lock_break, which first blocklists the
 * old address on the cluster, so even a process that were somehow still
 * alive could not write any more. Any other owner (another gateway, another
 * client) is left alone: librbd's normal lock hand-over applies.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RbdImage, RbdSession } from './librbd.js';

const RECORD = 'rbd-client';
/** A record is one address list; anything longer is not ours. */
const RECORD_MAX = 1024;

/**
 * The "ip:port/nonce" entity addresses in a Ceph address string, without
 * the messenger type ("v2:", "v1:", "any:") or the brackets of a vector:
 * rados_getaddrs gives "[v2:127.0.0.1:0/123,v1:...]" where the lock owner
 * list may give "127.0.0.1:0/123".
 */
export function entityAddresses(text: string): Set<string> {
  const out = new Set<string>();
  for (const part of text.replace(/^\[|\]$/g, '').split(',')) {
    const addr = part.trim().replace(/^(?:v1|v2|any|none):/, '');
    if (ENTITY_ADDRESS.test(addr)) out.add(addr);
  }
  return out;
}

/** IPv4 or bracketed IPv6, port, nonce: what Ceph prints for a client (no host names). */
export const ENTITY_ADDRESS = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}\/\d{1,20}$/;

/** The owner among `owners` that is `previous` (same entity address), if any. */
export function predecessorOwner(owners: readonly string[], previous: string): string | undefined {
  const mine = entityAddresses(previous);
  if (mine.size === 0) return undefined;
  return owners.find((owner) => [...entityAddresses(owner)].some((a) => mine.has(a)));
}

async function readRecord(dir: string): Promise<string | undefined> {
  try {
    const text = await readFile(join(dir, RECORD), 'utf8');
    return text.length <= RECORD_MAX ? text.trim() : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeRecord(dir: string, address: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `${RECORD}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${address}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, RECORD));
}

/**
 * At a writable open: break the lock if our predecessor holds it, then
 * record this process's address for our successor. Failures are logged, not
 * thrown: without fencing the LUN still works, librbd just waits for the old
 * watch to expire.
 */
export async function fencePredecessor(session: RbdSession, image: RbdImage, runtimeDir: string, log: Logger): Promise<void> {
  try {
    const previous = await readRecord(runtimeDir);
    if (previous) {
      const owner = predecessorOwner(await image.lockOwners(), previous);
      if (owner) {
        log.warn({ image: image.name, owner }, "rbd: the exclusive lock is held by this LUN's previous daemon process, which is gone; blocklisting it and breaking its lock");
        await image.lockBreak(owner);
      }
    }
  } catch (err) {
    log.warn({ err, image: image.name }, 'rbd: could not fence the previous daemon process; writes wait until the cluster expires its lock');
  }
  try {
    await writeRecord(runtimeDir, session.instanceAddress());
  } catch (err) {
    log.warn({ err, dir: runtimeDir }, 'rbd: cannot record this client address; a restart after a crash will wait for the old lock to expire');
  }
}
