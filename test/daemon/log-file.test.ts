/**
 * `serve --log-file` with logrotate's move-then-HUP: a child process logs
 * numbered lines, the test renames the file under it and sends SIGHUP; new
 * lines must go to a new file, and every line must be in one of the two.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const CHILD = join(__dirname, 'log-file-child.ts');
const COUNT = 20000;

function seqs(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe('log file rotation', () => {
  it('mv log log.1; kill -HUP: new lines go to a new file, none lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-log-'));
    const log = join(dir, 'sub', 'tcmu-ts.log'); // the directory is made on open
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, log, String(COUNT)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    // Rotate once some lines are in the file, well before the child is done.
    for (let i = 0; i < 2000 && seqs(log).length < 500; i++) await new Promise((r) => setTimeout(r, 5));
    renameSync(log, `${log}.1`);
    child.kill('SIGHUP');
    expect(await exited).toBe(0);

    const old = seqs(`${log}.1`);
    const fresh = seqs(log);
    expect(old.length).toBeGreaterThan(0);
    expect(fresh.length, 'lines after the HUP went to a new file').toBeGreaterThan(0);
    // Every line exactly once, in order within each file, the old file's before the new one's.
    expect([...old, ...fresh]).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(statSync(log).mode & 0o777).toBe(0o600);
  });
});
