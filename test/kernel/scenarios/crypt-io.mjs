// Guest-side helper for crypt-compat.sh: drives tcmu-ts's crypt layer (the
// built dist/, over the file handler, key from a key directory) so the
// scenario can compare with dm-crypt. Usage:
//   node crypt-io.mjs create IMG KEYFILE luks2|luks1 SECTOR argon2id|pbkdf2 DATA_BYTES
//   node crypt-io.mjs read   IMG KEYDIR KEYNAME BLOCKSIZE LEN   > plaintext
//   node crypt-io.mjs write  IMG KEYDIR KEYNAME BLOCKSIZE FILE    (FILE's bytes at offset 0)
import { readFileSync } from 'node:fs';
import { pino } from 'pino';

const root = process.env.TCMU_TS_ROOT;
const { openStack } = await import(`${root}/dist/src/backstore/registry.js`);
const { toLunStore } = await import(`${root}/dist/src/backstore/lun-store.js`);
const { KeyRing } = await import(`${root}/dist/src/config/keyring.js`);
const { createEncryptedImage } = await import(`${root}/dist/handlers/crypt/image.js`);

const [cmd, img, ...rest] = process.argv.slice(2);
const log = pino({ level: 'warn' }, pino.destination(2));

async function open(keyDir, keyName, blockSize) {
  const store = await openStack(
    [
      { handler: 'file', config: img },
      { handler: 'crypt', config: '', options: { key: keyName } },
    ],
    { blockSize: Number(blockSize), readOnly: false, log, keys: new KeyRing(keyDir) },
  );
  return toLunStore(store);
}

if (cmd === 'create') {
  const [keyFile, format, sector, kdf, size] = rest;
  const choice = kdf === 'pbkdf2' ? { type: 'pbkdf2', iterations: 1000 } : { type: 'argon2id', time: 1, memoryKiB: 32768, cpus: 1 };
  await createEncryptedImage(img, { format, size: Number(size), passphrase: readFileSync(keyFile), sectorSize: Number(sector), kdf: choice });
} else if (cmd === 'read') {
  const [keyDir, keyName, blockSize, len] = rest;
  const lun = await open(keyDir, keyName, blockSize);
  const buf = Buffer.alloc(Number(len));
  // In 1 MiB requests, as an initiator would issue them.
  for (let at = 0; at < buf.length; at += 1 << 20) await lun.read(at, [buf.subarray(at, Math.min(buf.length, at + (1 << 20)))]);
  await lun.close();
  process.stdout.write(buf);
} else if (cmd === 'write') {
  const [keyDir, keyName, blockSize, file] = rest;
  const lun = await open(keyDir, keyName, blockSize);
  const data = readFileSync(file);
  for (let at = 0; at < data.length; at += 1 << 20) await lun.write(at, [data.subarray(at, Math.min(data.length, at + (1 << 20)))], { fua: false });
  await lun.flush();
  await lun.close();
} else {
  console.error(`crypt-io: unknown command ${cmd}`);
  process.exit(2);
}
