/**
 * Wait for a path to appear without polling: an inotify watch (fs.watch) on
 * the deepest directory on the way to it that exists, moved one step down
 * each time the next directory appears. An idle daemon waiting for the
 * system bus this way does not wake up at all until something changes in
 * that directory.
 */
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** The deepest existing directory on the way to `path` (at worst "/"). */
function nearestExisting(path: string): string {
  let dir = dirname(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/**
 * Call `onAppear` once, as soon as `path` exists (at once if it already
 * does). Returns a function that stops waiting. Throws when no watch can be
 * set at the start (inotify limits, no such facility); a watch that fails
 * later calls `onWatchFailed` instead. Either way the caller falls back to
 * trying on a timer.
 */
export function whenPathAppears(path: string, onAppear: () => void, onWatchFailed: (err: unknown) => void): () => void {
  let watcher: FSWatcher | undefined;
  let watching = '';
  let done = false;
  const stop = () => {
    done = true;
    watcher?.close();
    watcher = undefined;
  };
  const look = () => {
    if (done) return;
    if (existsSync(path)) {
      stop();
      onAppear();
      return;
    }
    const dir = nearestExisting(path);
    if (dir === watching && watcher) return;
    watcher?.close();
    watching = dir;
    watcher = watch(dir, { persistent: false }, later);
    // The watched directory removed or the watch broken: start again from what exists.
    watcher.on('error', () => {
      watcher?.close();
      watcher = undefined;
      setImmediate(later);
    });
    // A step may have appeared between the existence check and the watch.
    if (existsSync(path) || nearestExisting(path) !== dir) setImmediate(later);
  };
  /** look() from an event: a failure there must not escape into the event loop. */
  const later = () => {
    try {
      look();
    } catch (err) {
      stop();
      onWatchFailed(err);
    }
  };
  look();
  return stop;
}
