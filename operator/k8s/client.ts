// The operator's one boundary to the Kubernetes API: the only module that imports
// @kubernetes/client-node at runtime (eslint enforces it). client-node supplies the kubeconfig
// (in-cluster, KUBECONFIG, auth, TLS agent) and the watch/informer machinery; requests are plain
// JSON over node:http(s) so that every call, its content type and its errors are explicit here.
import * as http from 'node:http';
import * as https from 'node:https';
import * as k8s from '@kubernetes/client-node';
import { ApiError, ConflictError, NotFoundError } from './errors.js';
import { resourcePath, type ResourceRef } from './resources.js';

export { ApiError, ConflictError, NotFoundError };

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  [k: string]: unknown;
}
export interface KubeList<T> {
  items: T[];
  metadata: { resourceVersion?: string };
}

export interface Informer<T> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  on(verb: 'error' | 'connect', cb: (err?: unknown) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
}

export interface KubeConfigOptions {
  server?: string;
  namespace?: string;
}

/** Loads in-cluster config, else KUBECONFIG / ~/.kube/config; `server` builds a plain loopback config (tests). */
export function loadKubeConfig(opts: KubeConfigOptions = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (opts.server) {
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: opts.server, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u', namespace: opts.namespace ?? 'default' }],
      currentContext: 'x',
    });
  } else {
    kc.loadFromDefault();
  }
  return kc;
}

export class KubeClient {
  readonly server: string;
  private agent?: http.Agent;
  constructor(
    readonly kc: k8s.KubeConfig,
    private readonly timeoutMs = 15000,
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('no current cluster in the kubeconfig');
    this.server = cluster.server.replace(/\/$/, '');
  }

  /** One keep-alive agent for all requests (client-node makes a new agent, hence a new connection, per call). */
  private agentFor(url: URL, opts: https.RequestOptions): http.Agent {
    if (!this.agent) {
      const cluster = this.kc.getCurrentCluster();
      this.agent =
        url.protocol === 'https:'
          ? new https.Agent({
              keepAlive: true,
              maxSockets: 64,
              ca: opts.ca,
              cert: opts.cert,
              key: opts.key,
              pfx: opts.pfx,
              passphrase: opts.passphrase,
              servername: cluster?.tlsServerName,
              ...(cluster?.skipTLSVerify ? { rejectUnauthorized: false } : {}),
            })
          : new http.Agent({ keepAlive: true, maxSockets: 64 });
    }
    return this.agent;
  }

  /** Closes pooled connections (on shutdown). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  /** The namespace of the kubeconfig's current context (for the leader-election Lease). */
  defaultNamespace(): string {
    const ctx = this.kc.getContextObject(this.kc.getCurrentContext());
    return ctx?.namespace ?? 'default';
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const url = new URL(this.server + path);
    const opts: https.RequestOptions = { method, headers: { Accept: 'application/json' }, timeout: this.timeoutMs };
    await this.kc.applyToHTTPSOptions(opts); // auth headers (tokens are re-read, so rotation works), TLS material
    opts.agent = this.agentFor(url, opts);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) Object.assign(opts.headers!, { 'Content-Type': contentType, 'Content-Length': payload.length });
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) {
            try {
              resolve((text ? JSON.parse(text) : {}) as T);
            } catch (e) {
              reject(e);
            }
            return;
          }
          let reason = '';
          let message = text;
          try {
            const s = JSON.parse(text) as { reason?: string; message?: string };
            reason = s.reason ?? '';
            message = s.message ?? text;
          } catch {
            /* not a Status */
          }
          const detail = `${method} ${path}: ${code} ${reason} ${message}`.trim();
          if (code === 404) reject(new NotFoundError(detail));
          else if (code === 409) reject(new ConflictError(detail, reason));
          else reject(new ApiError(code, reason, detail));
        });
      });
      req.on('timeout', () => req.destroy(new ApiError(0, 'Timeout', `${method} ${path}: timed out after ${this.timeoutMs} ms`)));
      req.on('error', (e) => reject(e instanceof ApiError ? e : new ApiError(0, 'Network', `${method} ${path}: ${(e as Error).message}`)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  get<T>(ref: ResourceRef): Promise<T> {
    return this.request<T>('GET', resourcePath(ref));
  }
  list<T>(ref: Omit<ResourceRef, 'name'>, labelSelector?: string): Promise<KubeList<T>> {
    const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    return this.request<KubeList<T>>('GET', resourcePath(ref) + q);
  }
  create<T>(ref: Omit<ResourceRef, 'name'>, body: unknown): Promise<T> {
    return this.request<T>('POST', resourcePath(ref), body);
  }
  replace<T>(ref: ResourceRef, body: unknown): Promise<T> {
    return this.request<T>('PUT', resourcePath(ref), body);
  }
  mergePatch<T>(ref: ResourceRef, body: unknown): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref), body, 'application/merge-patch+json');
  }
  jsonPatch<T>(ref: ResourceRef, ops: unknown[]): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref), ops, 'application/json-patch+json');
  }
  /** Server-side apply (JSON is valid YAML) with our field manager; force takes over fields we declare. */
  apply<T>(ref: ResourceRef, body: unknown, fieldManager: string): Promise<T> {
    const q = `?fieldManager=${encodeURIComponent(fieldManager)}&force=true`;
    return this.request<T>('PATCH', resourcePath(ref) + q, body, 'application/apply-patch+yaml');
  }
  delete(ref: ResourceRef): Promise<unknown> {
    return this.request('DELETE', resourcePath(ref));
  }

  /** A list+watch cache (client-node ListWatch): relists on 410 Gone; stops on other errors (caller restarts). */
  informer<T extends KubeObject>(ref: Omit<ResourceRef, 'name'>, labelSelector?: string): Informer<T> {
    const listFn = () => this.list<T>(ref, labelSelector) as unknown as Promise<k8s.KubernetesListObject<T & k8s.KubernetesObject>>;
    return listWatch<T>(this.kc, resourcePath(ref), listFn, labelSelector);
  }
}

/**
 * client-node's Watch, except that a watch which connects after its informer was stopped is
 * aborted at once. ListWatch.stop() aborts only a watch already established; one still being set
 * up (stop() during the list, or while the watch request connects) stayed open after stop() and
 * held the process: a SIGTERM just after the operator took its Lease hung its shutdown until the
 * forced exit 1, 20 s later.
 */
class StoppableWatch extends k8s.Watch {
  stopped = false;
  override async watch(...args: Parameters<k8s.Watch['watch']>): Promise<AbortController> {
    const controller = await super.watch(...args);
    if (this.stopped) controller.abort();
    return controller;
  }
}

/** A client-node ListWatch (not started) whose stop() also ends a watch still connecting. */
export function listWatch<T extends KubeObject>(
  kc: k8s.KubeConfig,
  path: string,
  listFn: () => Promise<k8s.KubernetesListObject<T & k8s.KubernetesObject>>,
  labelSelector?: string,
): Informer<T> {
  const watch = new StoppableWatch(kc);
  const lw = new k8s.ListWatch<T & k8s.KubernetesObject>(path, watch, listFn, false, labelSelector);
  const start = lw.start.bind(lw);
  const stop = lw.stop.bind(lw);
  lw.start = () => {
    watch.stopped = false;
    return start();
  };
  lw.stop = () => {
    watch.stopped = true;
    return stop();
  };
  return lw as unknown as Informer<T>;
}
