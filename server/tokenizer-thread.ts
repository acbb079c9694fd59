// A worker thread that tokenises long prompts off the event loop (server/tokenize-worker.ts). One
// thread, jobs in order; it never holds the process open. Errors come back with their kind, so a
// chat template's refusal is still a ChatTemplateError (a 400).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ChatTemplateError, type ChatMessage } from '../model/tokenizer.js';
import type { TokenizeResult, TokenizeWork } from './tokenize-worker.js';

export interface TokenizerThread {
  encode(text: string): Promise<number[]>;
  encodeChat(messages: ChatMessage[]): Promise<number[]>;
  close(): Promise<void>;
}

type Pending = { resolve(ids: number[]): void; reject(err: Error): void };

/**
 * Starts the thread for a model spec, or returns undefined where the compiled worker is absent
 * (running from TypeScript sources, as in unit tests): callers then tokenise inline.
 */
export function startTokenizerThread(spec: string, env: Record<string, string | undefined> = process.env): TokenizerThread | undefined {
  const file = fileURLToPath(new URL('./tokenize-worker.js', import.meta.url));
  if (!existsSync(file)) return undefined;
  const worker = new Worker(file, { workerData: { spec, env } });
  worker.unref();
  const pending = new Map<number, Pending>();
  let next = 0;
  let failed: Error | null = null;
  const failAll = (err: Error) => {
    failed = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on('message', (r: TokenizeResult) => {
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    if (pending.size === 0) worker.unref();
    if ('ids' in r) p.resolve(r.ids);
    else
      p.reject(
        r.error.name === 'ChatTemplateError' ? new ChatTemplateError(r.error.message) : new Error(`tokenizer thread: ${r.error.message}`),
      );
  });
  worker.on('error', (err) => failAll(new Error(`tokenizer thread failed: ${err.message}`)));
  worker.on('exit', () => failAll(new Error('tokenizer thread exited')));
  const run = (job: TokenizeWork) =>
    new Promise<number[]>((resolve, reject) => {
      if (failed) {
        reject(failed);
        return;
      }
      const id = next++;
      pending.set(id, { resolve, reject });
      worker.ref(); // a job in flight keeps the process up until its answer
      worker.postMessage({ ...job, id });
    });
  return {
    encode: (text) => run({ op: 'encode', text }),
    encodeChat: (messages) => run({ op: 'chat', messages }),
    async close() {
      await worker.terminate();
    },
  };
}
