// The engine calls the scheduler makes in a fixed scenario (a small pool: admission waits and
// preemptions; a stop from onToken; several maxTokens), for the one-lane regression check in
// server-inflight.test.ts. Deterministic: every request is submitted before the first step and
// burst gathering is off. Not a test file itself.
import type { NativeEngine } from '../../native/ts/addon-types.js';
import type { FinishReason, SequenceRequest } from '../../server/scheduler/scheduler.js';
import { FakeEngine } from './server-fake-engine.js';

interface SchedulerLike {
  submit(req: SequenceRequest): { cancel(): void };
  stop(): Promise<void>;
}

/** Wraps an engine so that every call that changes its state is written to `log`. */
export function recording(engine: FakeEngine, log: string[]): NativeEngine {
  return new Proxy(engine, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (prop === 'addSequence') {
          const id = (v as (...a: unknown[]) => number).apply(target, args);
          const o = args[1] as { promptTokens?: number };
          log.push(`add ${(args[0] as Int32Array).length}/${o.promptTokens} -> ${id}`);
          return id;
        }
        if (prop === 'removeSequence') log.push(`remove ${String(args[0])}`);
        if (prop === 'step')
          log.push(`step [${Array.from(args[0] as Int32Array).join(',')}]${args.length > 1 ? ` ${JSON.stringify(args[1])}` : ''}`);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as NativeEngine;
}

export const TRACE_ENGINE = { kvBlocks: 5, actBlocks: 3, blockTokens: 4 };

/** Runs the scenario on `make(engine)`; resolves with the engine calls and each request's outcome. */
export async function traceScenario(
  make: (engine: NativeEngine) => SchedulerLike,
  slots?: number,
): Promise<{ calls: string[]; outcomes: string[] }> {
  const calls: string[] = [];
  const fake = new FakeEngine({ ...TRACE_ENGINE, ...(slots !== undefined ? { slots } : {}) });
  const s = make(recording(fake, calls));
  const specs = [
    { prompt: [5, 6, 7], maxTokens: 14 },
    { prompt: [8, 9, 10, 11, 12], maxTokens: 10 },
    { prompt: [13], maxTokens: 16, stopAt: 9 },
    { prompt: [14, 15], maxTokens: 6 },
    { prompt: [16, 17, 18, 19, 20, 21, 22], maxTokens: 5 },
    { prompt: [23, 24], maxTokens: 13 },
  ];
  const outcomes = await Promise.all(
    specs.map(
      (spec, i) =>
        new Promise<string>((resolve) => {
          const tokens: number[] = [];
          s.submit({
            prompt: spec.prompt,
            maxTokens: spec.maxTokens,
            sampling: { temperature: 0, topP: 1, topK: 0, seed: i },
            ignoreEos: true,
            onToken: (t) => {
              tokens.push(t);
              return spec.stopAt !== undefined && tokens.length >= spec.stopAt;
            },
            onDone: (reason: FinishReason) => resolve(`${reason} ${tokens.join(',')}`),
          });
        }),
    ),
  );
  await s.stop();
  calls.push(`free ${fake.pools().kvBlocksFree + fake.pools().actBlocksFree}`);
  return { calls, outcomes };
}
