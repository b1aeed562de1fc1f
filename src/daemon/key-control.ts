/**
 * The `key` request of the control socket: memory-only keys for crypt
 * layers (`tcmu-ts key add|remove|list`), held in the daemon's KeyRing and
 * wiped on remove and at stop.
 *
 *   {cmd: 'key', op: 'add', name, key: <base64>}  -> {name, replaced, opened}
 *   {cmd: 'key', op: 'remove', name}              -> {name, removed}
 *   {cmd: 'key', op: 'list'}                      -> {names: [...]}
 *
 * The key travels base64 in the one JSON line (the socket is root-only and
 * checked by SO_PEERCRED). No answer, error or log line carries key bytes:
 * errors name the key and say what is wrong with its encoding or size,
 * never echo it. What JS cannot wipe (the request line as a string) is
 * dropped after the request and reclaimed by the GC; the decoded bytes are
 * wiped once the ring holds its own copy. After an add the daemon rescans
 * (`rescan`), so LUNs that could not open for want of the key open now;
 * `opened` says how many did.
 */
import type { KeyRing } from '../config/keyring.js';
import { validateSecretName } from '../config/key-files.js';
import { MAX_REQUEST_LINE } from './control.js';

/** The largest key `key add` takes: what fits base64 in one request line, rounded down to a power of two. */
export const MAX_SOCKET_KEY_BYTES = 32 * 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function invalid(message: string): Error {
  return Object.assign(new Error(message), { code: 'EINVAL' });
}

function keyName(req: Record<string, unknown>): string {
  const name = req.name;
  if (typeof name !== 'string') throw invalid('key: "name" must be a string');
  validateSecretName('key name', name);
  return name;
}

/** Decode the base64 key strictly; the message never contains the text. */
function decodeKey(name: string, text: unknown): Buffer {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !BASE64.test(text)) {
    throw invalid(`key "${name}": "key" must be the key's bytes in standard base64`);
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length === 0) throw invalid(`key "${name}" is empty`);
  if (bytes.length > MAX_SOCKET_KEY_BYTES) {
    const size = bytes.length;
    bytes.fill(0);
    throw Object.assign(new Error(`key "${name}" is ${size} bytes; a key given over the control socket may have at most ${MAX_SOCKET_KEY_BYTES} (use a key file in key_dir for larger ones)`), { code: 'E2BIG' });
  }
  return bytes;
}

export type KeyAnswer = { name: string; replaced: boolean; opened: number } | { name: string; removed: boolean } | { names: string[] };

export async function keyControl(keys: KeyRing, req: Record<string, unknown>, rescan: () => Promise<number> = async () => 0): Promise<KeyAnswer> {
  switch (req.op) {
    case 'add': {
      const name = keyName(req);
      const bytes = decodeKey(name, req.key);
      let replaced: boolean;
      try {
        replaced = keys.memoryKeyNames().includes(name);
        keys.add(name, bytes);
      } finally {
        bytes.fill(0);
      }
      return { name, replaced, opened: await rescan() };
    }
    case 'remove': {
      const name = keyName(req);
      return { name, removed: keys.remove(name) };
    }
    case 'list':
      return { names: keys.memoryKeyNames() };
    default:
      throw invalid(`key: unknown op ${JSON.stringify(req.op)?.slice(0, 40)} (add, remove or list)`);
  }
}

// A request line is JSON around the base64: make sure the largest key fits.
if (Math.ceil(MAX_SOCKET_KEY_BYTES / 3) * 4 + 200 > MAX_REQUEST_LINE) throw new Error('MAX_SOCKET_KEY_BYTES does not fit a control request line');
