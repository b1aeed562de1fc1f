/**
 * `serve --log-file PATH`: the daemon's JSON log in a file instead of on
 * stdout, reopened on SIGHUP so logrotate can move it away (`mv log log.1;
 * kill -HUP`, or logrotate's postrotate). Lines logged while the old file
 * is being closed are written to one file or the other, never dropped: the
 * writer (pino's sonic-boom) finishes its current write to the old file and
 * sends everything after it to the new one. Files are created 0600 (logs
 * name paths and LUNs), appended to, and their directory made if missing.
 */
import { pino, type DestinationStream } from 'pino';

export interface LogFile {
  readonly stream: DestinationStream;
  /** Close the current file and open PATH again (a new file once the old one was moved). */
  reopen(): void;
}

export function openLogFile(path: string): LogFile {
  const stream = pino.destination({ dest: path, sync: false, append: true, mkdir: true, mode: 0o600 });
  let reported = false;
  // An error of the file (disk full, directory gone on reopen) must not
  // kill the daemon: say it once on stderr, keep serving.
  stream.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    process.stderr.write(`tcmu-ts: log file ${path}: ${err.message}\n`);
  });
  stream.on('ready', () => {
    reported = false;
  });
  return {
    stream,
    reopen: () => stream.reopen(),
  };
}
