// Model-loading progress on stderr: a cli-progress bar when stderr is a terminal, else one plain
// line per stage (logs stay readable). Stages come from server/runtime.ts (LoadProgress).
import cliProgress from 'cli-progress';
import type { LoadProgress } from '../server/runtime.js';

/** The line for a stage when stderr is not a terminal. Pure. */
export function progressLine(p: LoadProgress): string {
  return `[serve] loading ${p.step}/${p.steps}: ${p.stage}`;
}

/** A progress callback for openRuntime; `tty` defaults to whether stderr is a terminal. */
export function startProgress(stream: NodeJS.WriteStream = process.stderr, tty = stream.isTTY === true): (p: LoadProgress) => void {
  if (!tty)
    return (p) => {
      stream.write(`${progressLine(p)}\n`);
    };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: 'loading model [{bar}] {value}/{total} {stage}',
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return (p) => {
    if (!started) {
      bar.start(p.steps, 0, { stage: p.stage });
      started = true;
    }
    bar.update(p.step, { stage: p.stage });
    if (p.step >= p.steps) bar.stop();
  };
}
