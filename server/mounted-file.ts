// Watching a file that Kubernetes mounts from a ConfigMap or Secret (the plan file, the API key
// file): an update swaps a symlink in the file's directory, so watching the file itself misses it.
// The directory is watched, and the file polled as a fallback; both only trigger `read`, which
// compares what it reads with what it applied last. One read at a time; a check during a read
// joins it. The one owner of that mechanism for server/plan-file.ts and server/auth.ts.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface MountedFileWatcher {
  /** Reads the file now (or joins the read in flight). */
  check(): Promise<void>;
  close(): void;
}

/** Runs `read` now and whenever the file may have changed; resolves after the first read. */
export async function watchMountedFile(
  file: string,
  pollMs: number,
  read: (isClosed: () => boolean) => Promise<void>,
): Promise<MountedFileWatcher> {
  let closed = false;
  let reading: Promise<void> | null = null;
  const isClosed = () => closed;
  const check = (): Promise<void> => {
    reading ??= read(isClosed).finally(() => {
      reading = null;
    });
    return reading;
  };
  await check();
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(path.dirname(file), { persistent: false }, () => {
      void check();
    });
    watcher.on('error', () => {
      watcher?.close();
      watcher = null;
    });
  } catch {
    watcher = null; // polling alone
  }
  const timer = setInterval(() => {
    void check();
  }, pollMs);
  timer.unref();
  return {
    check,
    close() {
      closed = true;
      clearInterval(timer);
      watcher?.close();
    },
  };
}
