// One completion request over plain node:http (no npm packages: the bench must run where only a
// Node binary is unpacked), timed as bench/serving-workload.ts defines the figures. node:http has
// no headers/body timeouts, unlike fetch (undici gives up after 300 s, which a long open-loop level
// on a slow model can exceed).
import http from 'node:http';
import type { RequestSample } from './serving-workload.js';

export interface CompletionJob {
  model: string;
  prompt: number[] | string;
  maxTokens: number;
  /** Samples of the prompt (the API's n; absent: 1). */
  n?: number;
  stream: boolean;
  ignoreEos: boolean;
}

/** Connections are reused across requests, and as many are opened as there are requests in flight. */
export const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

interface SseState {
  buf: string;
  first: number;
  last: number;
  itl: number[];
  promptTokens: number;
  outputTokens: number;
  error?: string;
}

/** Consumes whole `data: ...` events from the buffer; records chunk times and the usage chunk. */
function takeEvents(st: SseState, now: number): void {
  let i: number;
  while ((i = st.buf.indexOf('\n\n')) >= 0) {
    const ev = st.buf.slice(0, i).trim();
    st.buf = st.buf.slice(i + 2);
    if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
    let j: {
      choices?: Array<{ text?: string; index?: number }>;
      usage?: { prompt_tokens: number; completion_tokens: number };
      error?: { message?: string };
    };
    try {
      j = JSON.parse(ev.slice(6)) as typeof j;
    } catch {
      st.error = `unparsable SSE event: ${ev.slice(0, 80)}`;
      continue;
    }
    if (j.error) st.error = j.error.message ?? 'error event';
    if (j.usage) {
      st.promptTokens = j.usage.prompt_tokens;
      st.outputTokens = j.usage.completion_tokens;
    }
    if (j.choices && j.choices.length > 0) {
      if (st.first === 0) st.first = now;
      // Gaps between sample 0's chunks: with n > 1 the samples' chunks interleave.
      if ((j.choices[0].index ?? 0) === 0) {
        if (st.last > 0) st.itl.push((now - st.last) / 1000);
        st.last = now;
      }
    }
  }
}

/** Sends one completion; resolves with its sample (never rejects: failures are samples with ok false). */
export function sendCompletion(baseUrl: string, job: CompletionJob): Promise<RequestSample> {
  const body = JSON.stringify({
    model: job.model,
    prompt: job.prompt,
    max_tokens: job.maxTokens,
    ...(job.n !== undefined && job.n > 1 ? { n: job.n } : {}),
    temperature: 0,
    ignore_eos: job.ignoreEos,
    stream: job.stream,
    ...(job.stream ? { stream_options: { include_usage: true } } : {}),
  });
  const url = new URL('/v1/completions', baseUrl);
  const fail = (t0: number, error: string): RequestSample => ({
    ok: false,
    error,
    promptTokens: 0,
    outputTokens: 0,
    ttft: 0,
    latency: (performance.now() - t0) / 1000,
    itl: [],
  });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.setEncoding('utf8');
        const st: SseState = { buf: '', first: 0, last: 0, itl: [], promptTokens: 0, outputTokens: 0 };
        res.on('data', (d: string) => {
          st.buf += d;
          if (job.stream && res.statusCode === 200) takeEvents(st, performance.now());
        });
        res.on('error', (err) => resolve(fail(t0, err.message)));
        res.on('end', () => {
          const end = performance.now();
          if (res.statusCode !== 200) {
            resolve(fail(t0, `HTTP ${res.statusCode}: ${st.buf.slice(0, 200)}`));
            return;
          }
          if (!job.stream) {
            try {
              const j = JSON.parse(st.buf) as { usage: { prompt_tokens: number; completion_tokens: number } };
              st.promptTokens = j.usage.prompt_tokens;
              st.outputTokens = j.usage.completion_tokens;
              st.first = end;
            } catch {
              resolve(fail(t0, 'unparsable response body'));
              return;
            }
          }
          if (st.error) {
            resolve(fail(t0, st.error));
            return;
          }
          if (st.first === 0) {
            resolve(fail(t0, 'no token arrived'));
            return;
          }
          resolve({
            ok: true,
            promptTokens: st.promptTokens,
            outputTokens: st.outputTokens,
            samples: job.n ?? 1,
            ttft: (st.first - t0) / 1000,
            latency: (end - t0) / 1000,
            itl: st.itl,
          });
        });
      },
    );
    req.on('error', (err) => resolve(fail(t0, err.message)));
    req.end(body);
  });
}

/** GET a JSON document; null when the server does not have it (e.g. another OpenAI server without our stats route). */
export function getJson<T>(baseUrl: string, path: string): Promise<T | null> {
  return new Promise((resolve) => {
    http
      .get(new URL(path, baseUrl), { agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) {
            resolve(null);
            return;
          }
          try {
            resolve(JSON.parse(text) as T);
          } catch {
            resolve(null);
          }
        });
        res.on('error', () => resolve(null));
      })
      .on('error', () => resolve(null));
  });
}
