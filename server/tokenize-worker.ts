// The tokenizer worker thread (server/tokenizer-thread.ts starts it): loads the same model spec's
// tokenizer and encodes long prompts, so the event loop never runs a long BPE merge.
import { parentPort, workerData } from 'node:worker_threads';
import { loadModel } from '../model/load.js';
import type { ChatMessage } from '../model/tokenizer.js';

export type TokenizeWork = { op: 'encode'; text: string } | { op: 'chat'; messages: ChatMessage[] };
export type TokenizeJob = TokenizeWork & { id: number };
export type TokenizeResult = { id: number; ids: number[] } | { id: number; error: { name: string; message: string } };

const { spec, env } = workerData as { spec: string; env: Record<string, string | undefined> };
const ready = loadModel(spec, { env }).then((m) => m.tokenizer);

parentPort!.on('message', (job: TokenizeJob) => {
  void ready
    .then((tok) => {
      const ids = job.op === 'encode' ? tok.encode(job.text) : tok.encodeChat(job.messages);
      parentPort!.postMessage({ id: job.id, ids } satisfies TokenizeResult);
    })
    .catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      parentPort!.postMessage({ id: job.id, error: { name: e.name, message: e.message } } satisfies TokenizeResult);
    });
});
