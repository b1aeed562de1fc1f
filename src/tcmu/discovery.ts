/**
 * Find TCMU devices through /sys/class/uio. The kernel names each one
 * `tcm-user/<hba>/<device>/<dev_config>`; dev_config itself may contain
 * slashes (`file//var/lib/lun.img`), so only the first three separators count.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { subtypeOf } from '../backstore/dev-config.js';

export const UIO_CLASS = '/sys/class/uio';

export interface TcmuUioDevice {
  /** uio node name, e.g. 'uio0'; the char device is /dev/uio0 */
  uio: string;
  hbaIndex: number;
  deviceName: string;
  devConfig: string;
  /** The part of devConfig before the first '/', e.g. 'file': the top layer's handler for a stack. */
  subtype: string;
  /** Length of map0 in bytes. */
  mapSize: number;
}

/** Parse a uio `name`; undefined when it is not a TCMU device. */
export function parseUioName(name: string): Omit<TcmuUioDevice, 'uio' | 'mapSize'> | undefined {
  const match = /^tcm-user\/(\d+)\/([^/]+)\/(.*)$/.exec(name.trim());
  if (!match) return undefined;
  const devConfig = match[3]!;
  return { hbaIndex: Number(match[1]), deviceName: match[2]!, devConfig, subtype: subtypeOf(devConfig) };
}

export function readUioDevice(uio: string, root = UIO_CLASS): TcmuUioDevice | undefined {
  let name: string;
  try {
    name = readFileSync(join(root, uio, 'name'), 'utf8');
  } catch {
    return undefined; // removed while we looked
  }
  const parsed = parseUioName(name);
  if (!parsed) return undefined;
  // maps/map0/size is hex ("0x0000000040800000").
  const mapSize = Number(readFileSync(join(root, uio, 'maps', 'map0', 'size'), 'utf8').trim());
  if (!Number.isSafeInteger(mapSize) || mapSize <= 0) {
    throw new Error(`${uio}: unreadable map0 size`);
  }
  return { uio, mapSize, ...parsed };
}

/** Every TCMU device present now, in uio order. */
export function listTcmuDevices(root = UIO_CLASS): TcmuUioDevice[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return [];
  }
  return entries
    .filter((e) => /^uio\d+$/.test(e))
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)))
    .map((e) => readUioDevice(e, root))
    .filter((d): d is TcmuUioDevice => d !== undefined);
}
