// One attempt to send a request to a pod. It resolves with the pod's response once its headers
// arrive; a failure before that (refused, reset, timeout) rejects with ConnectError, which the
// proxy may retry on another pod because no byte has reached the client yet.
import * as http from 'node:http';

export class ConnectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectError';
  }
}

export interface UpstreamRequest {
  method: string;
  path: string;
  headers: http.OutgoingHttpHeaders;
  body?: Buffer;
}

/** Headers passed to the pod (hop-by-hop ones and Host are not). */
export const FORWARDED_REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'x-request-id', 'openai-organization', 'user-agent'];
/** Headers passed back to the client. */
export const FORWARDED_RESPONSE_HEADERS = ['content-type', 'cache-control', 'retry-after', 'x-request-id', 'www-authenticate'];

/** Response headers for the client: the forwarded ones, and the pod's content-length when it sent one (the bytes pass unchanged). */
export function responseHeaders(src: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out = pickHeaders(src, FORWARDED_RESPONSE_HEADERS);
  if (src['content-length'] !== undefined && src['transfer-encoding'] === undefined) out['content-length'] = src['content-length'];
  return out;
}

export function pickHeaders(src: http.IncomingHttpHeaders, names: readonly string[]): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const n of names) {
    const v = src[n];
    if (v !== undefined) out[n] = v;
  }
  return out;
}

export function send(
  base: string,
  r: UpstreamRequest,
  agent: http.Agent,
  headersTimeoutMs: number,
): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const headers = { ...r.headers, ...(r.body ? { 'content-length': r.body.length } : {}) };
    const req = http.request(base + r.path, { method: r.method, headers, agent });
    let answered = false;
    const timer = setTimeout(() => req.destroy(new Error(`no response headers within ${headersTimeoutMs} ms`)), headersTimeoutMs);
    req.on('response', (res) => {
      answered = true;
      clearTimeout(timer);
      resolve({ res, req });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      if (!answered) reject(new ConnectError(e.message));
    });
    req.end(r.body);
  });
}
