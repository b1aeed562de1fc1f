/**
 * Child for log-file.test.ts: logs `count` numbered lines to a log file the
 * way `serve --log-file` does (reopened on SIGHUP), a few per event-loop
 * turn so a rotation lands in the middle, then ends the stream and exits.
 */
import { openLogFile } from '../../src/daemon/log-file.js';
import { createLogger } from '../../src/log.js';

const [path, countText] = process.argv.slice(2);
const count = Number(countText);
const file = openLogFile(path!);
const log = createLogger('info', file.stream);
process.on('SIGHUP', () => file.reopen());
let seq = 0;
const step = () => {
  for (let i = 0; i < 20 && seq < count; i++) log.info({ seq: seq++ }, 'line');
  if (seq < count) setTimeout(step, 1);
  else (file.stream as unknown as { end(): void }).end(); // drains in order, then the process exits
};
process.stdout.write('started\n');
step();
