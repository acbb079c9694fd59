// ============================================================================================
// TEST DOUBLE: a loopback emulation of the Kubernetes API server, for tests and benchmarks only.
// It is NOT Kubernetes. It serves plain HTTP on 127.0.0.1:<random port> and emulates:
//   - discovery: /version, /api, /api/v1, /apis, /apis/<group>/<version> (APIResourceLists, with a
//     registered CRD's shortNames and categories, so `kubectl get hsd` and `kubectl get all` resolve);
//   - CRUD on a fixed table of resources (pods, services, configmaps, secrets, nodes, PDBs, NetworkPolicies, events (core and
//     events.k8s.io), deployments, leases, endpointslices, hybridservedeployments, and leaderworkersets once
//     installLeaderWorkerSet() is called), with uid, creationTimestamp,
//     generation (bumped on spec changes), one global resourceVersion counter;
//   - 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale resourceVersion (PUT, or a patch
//     carrying metadata.resourceVersion), Kubernetes Status bodies;
//   - list with equality label selectors (a=b, a!=b, a) and watch (?watch=true) with ADDED,
//     MODIFIED, DELETED, BOOKMARK (allowWatchBookmarks) events, timeoutSeconds, and
//     410 Gone (an ERROR event with code 410) for a resourceVersion older than compact();
//     watch headers are flushed at once (client-node waits for them);
//   - status and scale subresources (the scale one maps specReplicasPath/statusReplicasPath/
//     labelSelectorPath from the CRD; the main resource ignores .status, /status only takes it);
//   - finalizers + deletionTimestamp; ownerReference garbage collection (background cascade by uid);
//   - patches: merge-patch, strategic-merge (treated as merge-patch), json-patch (add/replace/remove/
//     test), and server-side apply approximated as create-or-merge with a required fieldManager
//     (managedFields records the manager; NO field ownership, NO apply conflicts, NO removal of
//     fields a manager stops applying);
//   - custom resources of a registered CRD: defaulting, pruning, openAPIV3Schema validation (ajv)
//     and CEL x-kubernetes-validations (@marcbachmann/cel-js), 422 Invalid on failure;
//   - server-side printing: GET with Accept ...;as=Table returns a meta.k8s.io/v1 Table built from
//     the CRD's additionalPrinterColumns (JSONPath subset: fields, [n], [?(@.k=="v")]);
//   - fault injection: the next N matching requests answer 409 or 500; dropWatches() ends every
//     open watch; compact() expires old resourceVersions (410 Gone).
// Not emulated: auth/RBAC, admission webhooks, pagination, field selectors, set-based selectors,
// managedFields semantics, foreground/orphan deletion, dryRun, namespace lifecycle, controllers
// (no ReplicaSets; test/k8s/kubelet.ts plays the Deployment controller and kubelet).
// ============================================================================================
import * as http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { CustomResourceValidator } from './validation.js';

export type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface ResourceDef {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  status?: boolean;
  /** Drop .status on create as a real API server does (custom resources always; builtins here keep it for the kubelet double). */
  statusOnlyThroughSubresource?: boolean;
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string };
  validator?: CustomResourceValidator;
  printerColumns?: { name: string; type: string; jsonPath: string }[];
  shortNames?: string[];
  categories?: string[];
  singular?: string;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
  rv: number;
  res: string;
}

interface Watcher {
  res: string;
  namespace?: string;
  selector: Selector;
  resp: http.ServerResponse;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}
interface Fault {
  method?: string;
  pathIncludes?: string;
  status: 409 | 500;
  remaining: number;
}
type Selector = (labels: Record<string, string> | undefined) => boolean;

const BUILTIN: ResourceDef[] = [
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, status: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, status: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, status: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, status: true },
  { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  {
    group: 'apps',
    version: 'v1',
    plural: 'deployments',
    kind: 'Deployment',
    namespaced: true,
    status: true,
    scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' },
  },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true, status: true },
  { group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
];

/**
 * LeaderWorkerSet (sigs.k8s.io/lws): an add-on API, served only after installLeaderWorkerSet(), as in a
 * cluster where LWS is installed; before that its paths answer 404 like a real API server's. Stored and
 * watched like any resource with a status subresource; no LWS controller runs (tests write its status).
 */
export const LEADER_WORKER_SET: ResourceDef = {
  group: 'leaderworkerset.x-k8s.io',
  version: 'v1',
  plural: 'leaderworkersets',
  kind: 'LeaderWorkerSet',
  namespaced: true,
  status: true,
  statusOnlyThroughSubresource: true,
  scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' },
};

const resKey = (d: { group: string; version: string; plural: string }) => `${d.group}/${d.version}/${d.plural}`;
// JSON round trip, not structuredClone: under jest the latter makes objects of another realm, which
// cel-js does not recognise as maps.
const clone = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

function parseSelector(text: string | null): Selector {
  if (!text) return () => true;
  const terms = text
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      let m = /^([^!=]+)!=(.*)$/.exec(t);
      if (m) {
        const [k, v] = [m[1].trim(), m[2].trim()];
        return (l: Record<string, string>) => l[k] !== v;
      }
      m = /^([^!=]+)==?(.*)$/.exec(t);
      if (m) {
        const [k, v] = [m[1].trim(), m[2].trim()];
        return (l: Record<string, string>) => l[k] === v;
      }
      if (t.startsWith('!')) {
        const k = t.slice(1);
        return (l: Record<string, string>) => !(k in l);
      }
      return (l: Record<string, string>) => t in l;
    });
  return (labels) => terms.every((f) => f(labels ?? {}));
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Obj = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function jsonPointer(path: string): string[] {
  return path
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}
function applyJsonPatch(doc: Obj, ops: Obj[]): Obj {
  const out = clone(doc);
  for (const op of ops) {
    const parts = jsonPointer(String(op.path));
    const last = parts.pop()!;
    let parent: Obj = out;
    for (const p of parts) {
      if (parent[p] === undefined) throw new HttpError(422, 'Invalid', `path ${op.path} does not exist`);
      parent = parent[p];
    }
    if (op.op === 'test') {
      if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) throw new HttpError(422, 'Invalid', `test failed at ${op.path}`);
      continue;
    }
    if (op.op === 'remove') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      continue;
    }
    if (op.op === 'add' || op.op === 'replace') {
      if (Array.isArray(parent)) {
        if (last === '-') parent.push(op.value);
        else if (op.op === 'add') parent.splice(Number(last), 0, op.value);
        else parent[Number(last)] = op.value;
      } else parent[last] = op.value;
      continue;
    }
    throw new HttpError(422, 'Invalid', `unsupported json-patch op ${op.op}`);
  }
  return out;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

function getPath(obj: Obj, path: string): unknown {
  return path
    .replace(/^\./, '')
    .split('.')
    .reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Obj)[k] : undefined), obj);
}
function setPath(obj: Obj, path: string, value: unknown): void {
  const parts = path.replace(/^\./, '').split('.');
  const last = parts.pop()!;
  let o = obj;
  for (const p of parts) {
    if (!o[p] || typeof o[p] !== 'object') o[p] = {};
    o = o[p];
  }
  o[last] = value;
}

/** The JSONPath subset printer columns use: .a.b, [n], and [?(@.k=="v")] filters. */
export function jsonPathValue(obj: unknown, path: string): unknown {
  let cur: unknown[] = [obj];
  const re = /\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_-]+)=="([^"]*)"\)\]/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(path))) {
    cur = cur.flatMap((v): unknown[] => {
      if (v === null || typeof v !== 'object') return [];
      if (m![1] !== undefined) {
        const x = (v as Obj)[m![1]];
        return x === undefined ? [] : [x];
      }
      if (m![2] !== undefined) {
        const x = (v as unknown[])[Number(m![2])];
        return x === undefined ? [] : [x];
      }
      return Array.isArray(v) ? v.filter((e) => e && String((e as Obj)[m![3]]) === m![4]) : [];
    });
  }
  return cur.length === 0 ? undefined : cur.length === 1 ? cur[0] : cur.join(',');
}

function age(ts: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export class FakeApiServer {
  readonly defs = new Map<string, ResourceDef>();
  private readonly store = new Map<string, Map<string, Obj>>();
  private readonly log: WatchEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly listeners = new Set<(e: WatchEvent) => void>();
  private faults: Fault[] = [];
  private rv = 1;
  private compactedRv = 0;
  private server?: http.Server;
  url = '';
  /** Requests served, by "METHOD resource[/sub][ list| watch]" (tests and the bench read it). */
  readonly requestCounts = new Map<string, number>();
  bookmarkIntervalMs = 1000;

  constructor() {
    for (const d of BUILTIN) this.register(d);
  }

  register(def: ResourceDef): void {
    this.defs.set(resKey(def), def);
    this.store.set(resKey(def), this.store.get(resKey(def)) ?? new Map());
  }

  /** Serves the LeaderWorkerSet API (as if its CRD were installed). */
  installLeaderWorkerSet(): void {
    this.register(LEADER_WORKER_SET);
  }

  /** Registers a CRD object (apiextensions.k8s.io/v1) as a served resource with its schema and CEL rules. */
  registerCrd(crd: Obj): void {
    const spec = crd.spec;
    const v = spec.versions.find((x: Obj) => x.storage) ?? spec.versions[0];
    this.register({
      group: spec.group,
      version: v.name,
      plural: spec.names.plural,
      kind: spec.names.kind,
      namespaced: spec.scope === 'Namespaced',
      status: v.subresources?.status !== undefined,
      scale: v.subresources?.scale,
      validator: new CustomResourceValidator(v.schema.openAPIV3Schema),
      printerColumns: v.additionalPrinterColumns,
      shortNames: spec.names.shortNames,
      categories: spec.names.categories,
      singular: spec.names.singular,
    });
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => this.sendError(res, e));
    });
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.dropWatches();
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }

  // ---- test controls -------------------------------------------------------------------------
  /** The next `count` requests matching method/path answer `status` (409 Conflict or 500). */
  injectFault(f: { method?: string; pathIncludes?: string; status: 409 | 500; count: number }): void {
    this.faults.push({ method: f.method, pathIncludes: f.pathIncludes, status: f.status, remaining: f.count });
  }
  pendingFaults(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }
  /** Ends every open watch, as an apiserver restart or a load balancer timeout would. */
  dropWatches(): void {
    for (const w of [...this.watchers]) this.endWatch(w);
  }
  /** Forgets history: a watch from an older resourceVersion gets 410 Gone. Also ends open watches. */
  compact(): void {
    this.compactedRv = this.rv;
    this.log.length = 0;
    this.dropWatches();
  }
  /** In-process subscription to every change (the simulated kubelet uses it). */
  subscribe(fn: (e: WatchEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // ---- in-process access (same code paths as HTTP, so watchers see the changes) ---------------
  def(group: string, version: string, plural: string): ResourceDef {
    const d = this.defs.get(`${group}/${version}/${plural}`);
    if (!d) throw new Error(`unknown resource ${group}/${version}/${plural}`);
    return d;
  }
  /** Whether the resource is served now (LeaderWorkerSet only after installLeaderWorkerSet()). */
  served(d: ResourceDef): boolean {
    return this.defs.has(resKey(d));
  }
  get(d: ResourceDef, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.store.get(resKey(d))!.get(this.key(d, namespace, name));
    return o && clone(o);
  }
  list(d: ResourceDef, namespace?: string, selector?: string): Obj[] {
    const sel = parseSelector(selector ?? null);
    return [...this.store.get(resKey(d))!.values()]
      .filter((o) => (!namespace || o.metadata.namespace === namespace) && sel(o.metadata.labels))
      .map(clone);
  }
  create(d: ResourceDef, namespace: string | undefined, body: Obj): Obj {
    return this.doCreate(d, namespace, clone(body));
  }
  update(d: ResourceDef, namespace: string | undefined, name: string, mutate: (o: Obj) => void, sub?: 'status'): Obj {
    const cur = this.get(d, namespace, name);
    if (!cur) throw new HttpError(404, 'NotFound', `${d.plural} "${name}" not found`);
    mutate(cur);
    return this.doUpdate(d, namespace, name, cur, sub, false);
  }
  remove(d: ResourceDef, namespace: string | undefined, name: string): void {
    this.doDelete(d, namespace, name);
  }
  resourceVersion(): number {
    return this.rv;
  }

  // ---- HTTP ------------------------------------------------------------------------------------
  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const body = await new Promise<string>((resolve) => {
      const c: Buffer[] = [];
      req.on('data', (b: Buffer) => c.push(b));
      req.on('end', () => resolve(Buffer.concat(c).toString('utf8')));
    });
    const path = url.pathname;
    if (this.discovery(path, res)) return;
    const route = this.route(path);
    if (!route) {
      // Counted too (by path): tests check that a missing add-on API is not hammered.
      this.requestCounts.set(`${method} ${path} unserved`, (this.requestCounts.get(`${method} ${path} unserved`) ?? 0) + 1);
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${path})`);
    }
    const { def: d, namespace, name, sub } = route;
    const count = `${method} ${d.plural}${sub ? '/' + sub : ''}${name ? '' : url.searchParams.get('watch') === 'true' ? ' watch' : ' list'}`;
    this.requestCounts.set(count, (this.requestCounts.get(count) ?? 0) + 1);
    const fault = this.faults.find(
      (f) => f.remaining > 0 && (!f.method || f.method === method) && (!f.pathIncludes || req.url!.includes(f.pathIncludes)),
    );
    if (fault && url.searchParams.get('watch') !== 'true') {
      fault.remaining--;
      if (fault.remaining === 0) this.faults = this.faults.filter((f) => f.remaining > 0);
      throw fault.status === 409
        ? new HttpError(
            409,
            'Conflict',
            'Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected)',
          )
        : new HttpError(500, 'InternalError', 'an error on the server ("injected fault") has prevented the request from succeeding');
    }
    const parsed: Obj | undefined = body ? this.parseBody(body, req.headers['content-type'] ?? '') : undefined;

    const asTable = method === 'GET' && String(req.headers.accept ?? '').includes('as=Table');
    if (!name) {
      if (method === 'GET' && url.searchParams.get('watch') === 'true') return this.watch(d, namespace, url, res);
      if (asTable) return this.send(res, 200, this.table(d, this.listBody(d, namespace, url.searchParams.get('labelSelector')).items));
      if (method === 'GET') return this.send(res, 200, this.listBody(d, namespace, url.searchParams.get('labelSelector')));
      if (method === 'POST') return this.send(res, 201, this.doCreate(d, namespace, parsed ?? {}));
      throw new HttpError(405, 'MethodNotAllowed', `${method} not allowed on a collection`);
    }
    if (sub === 'scale') return this.scale(d, namespace, name, method, parsed, req.headers['content-type'] ?? '', res);
    const cur = this.store.get(resKey(d))!.get(this.key(d, namespace, name));
    switch (method) {
      case 'GET':
        if (!cur) throw this.notFound(d, name);
        return this.send(res, 200, asTable ? this.table(d, [cur]) : cur);
      case 'PUT':
        if (!cur) throw this.notFound(d, name);
        return this.send(res, 200, this.doUpdate(d, namespace, name, parsed ?? {}, sub, true));
      case 'PATCH': {
        const ct = String(req.headers['content-type'] ?? '');
        if (ct.includes('apply-patch')) {
          const manager = url.searchParams.get('fieldManager');
          if (!manager) throw new HttpError(400, 'BadRequest', 'fieldManager is required for apply patch');
          const applied = parsed ?? {};
          if (!cur) {
            if (sub) throw this.notFound(d, name);
            applied.metadata = { ...(applied.metadata ?? {}), name, managedFields: [{ manager, operation: 'Apply' }] };
            return this.send(res, 201, this.doCreate(d, namespace, applied));
          }
          const merged = mergePatch(cur, applied) as Obj;
          const mf: Obj[] = (merged.metadata.managedFields ?? []).filter((m: Obj) => m.manager !== manager);
          merged.metadata.managedFields = [...mf, { manager, operation: 'Apply' }];
          merged.metadata.resourceVersion = cur.metadata.resourceVersion;
          return this.send(res, 200, this.doUpdate(d, namespace, name, merged, sub, false));
        }
        if (!cur) throw this.notFound(d, name);
        let next: Obj;
        if (ct.includes('json-patch')) {
          if (!Array.isArray(parsed)) throw new HttpError(400, 'BadRequest', 'json patch body must be an array');
          next = applyJsonPatch(cur, parsed);
        } else {
          next = mergePatch(cur, parsed) as Obj;
        }
        const checkRv = Boolean(parsed && !Array.isArray(parsed) && parsed.metadata?.resourceVersion);
        if (!checkRv) next.metadata.resourceVersion = cur.metadata.resourceVersion;
        return this.send(res, 200, this.doUpdate(d, namespace, name, next, sub, checkRv));
      }
      case 'DELETE':
        if (!cur) throw this.notFound(d, name);
        return this.send(res, 200, this.doDelete(d, namespace, name));
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${method} not allowed`);
    }
  }

  private parseBody(body: string, ct: string): Obj {
    try {
      return ct.includes('yaml') && !/^\s*[{[]/.test(body) ? parseYaml(body) : JSON.parse(body);
    } catch (e) {
      throw new HttpError(400, 'BadRequest', `cannot parse body: ${(e as Error).message}`);
    }
  }

  private discovery(path: string, res: http.ServerResponse): boolean {
    const defs = [...this.defs.values()];
    if (path === '/version') {
      this.send(res, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0-hybridserve-test-double' });
      return true;
    }
    if (path === '/api') {
      this.send(res, 200, { kind: 'APIVersions', versions: ['v1'] });
      return true;
    }
    if (path === '/apis') {
      const groups = new Map<string, string[]>();
      for (const d of defs) if (d.group) groups.set(d.group, [...new Set([...(groups.get(d.group) ?? []), d.version])]);
      this.send(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, vs]) => ({
          name,
          versions: vs.map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
          preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] },
        })),
      });
      return true;
    }
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (!m) return false;
    const group = m[2] ?? '';
    const version = m[1] ?? m[3];
    const rs = defs.filter((d) => d.group === group && d.version === version);
    if (rs.length === 0) return false;
    const resources = rs.flatMap((d) => [
      {
        name: d.plural,
        singularName: d.singular ?? d.kind.toLowerCase(),
        namespaced: d.namespaced,
        kind: d.kind,
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
        ...(d.shortNames ? { shortNames: d.shortNames } : {}),
        ...(d.categories ? { categories: d.categories } : {}),
      },
      ...(d.status
        ? [{ name: `${d.plural}/status`, singularName: '', namespaced: d.namespaced, kind: d.kind, verbs: ['get', 'patch', 'update'] }]
        : []),
      ...(d.scale
        ? [
            {
              name: `${d.plural}/scale`,
              singularName: '',
              namespaced: d.namespaced,
              group: 'autoscaling',
              version: 'v1',
              kind: 'Scale',
              verbs: ['get', 'patch', 'update'],
            },
          ]
        : []),
    ]);
    this.send(res, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources });
    return true;
  }

  private route(path: string): { def: ResourceDef; namespace?: string; name?: string; sub?: 'status' | 'scale' } | undefined {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status|scale))?$/.exec(path);
    if (!m) return undefined;
    const def = this.defs.get(`${m[2] ?? ''}/${m[1] ?? m[3]}/${m[5]}`);
    if (!def) return undefined;
    return {
      def,
      namespace: m[4] && decodeURIComponent(m[4]),
      name: m[6] && decodeURIComponent(m[6]),
      sub: m[7] as 'status' | 'scale' | undefined,
    };
  }

  private key(d: ResourceDef, ns: string | undefined, name: string): string {
    return d.namespaced ? `${ns ?? 'default'}/${name}` : name;
  }
  private notFound(d: ResourceDef, name: string) {
    return new HttpError(404, 'NotFound', `${d.plural}${d.group ? '.' + d.group : ''} "${name}" not found`);
  }
  private apiVersion(d: ResourceDef) {
    return d.group ? `${d.group}/${d.version}` : d.version;
  }

  private listBody(d: ResourceDef, namespace: string | undefined, selector: string | null): Obj {
    const sel = parseSelector(selector);
    const items = [...this.store.get(resKey(d))!.values()].filter(
      (o) => (!namespace || o.metadata.namespace === namespace) && sel(o.metadata.labels),
    );
    return { apiVersion: this.apiVersion(d), kind: `${d.kind}List`, metadata: { resourceVersion: String(this.rv) }, items };
  }

  private admit(d: ResourceDef, obj: Obj, old?: Obj): void {
    if (!d.validator) return;
    const errors = d.validator.admit(obj, old);
    if (errors.length) throw new HttpError(422, 'Invalid', `${d.kind}.${d.group} "${obj.metadata?.name}" is invalid: ${errors.join('; ')}`);
  }

  private doCreate(d: ResourceDef, namespace: string | undefined, body: Obj): Obj {
    const name = body.metadata?.name;
    if (!name) throw new HttpError(422, 'Invalid', 'metadata.name: Required value');
    const store = this.store.get(resKey(d))!;
    const k = this.key(d, namespace ?? body.metadata.namespace, name);
    if (store.has(k)) throw new HttpError(409, 'AlreadyExists', `${d.plural} "${name}" already exists`);
    const obj: Obj = { ...body, apiVersion: this.apiVersion(d), kind: d.kind };
    obj.metadata = {
      ...body.metadata,
      name,
      uid: randomUUID(),
      generation: 1,
      creationTimestamp: new Date().toISOString(),
      resourceVersion: String(++this.rv),
    };
    if (d.namespaced) obj.metadata.namespace = namespace ?? body.metadata.namespace ?? 'default';
    delete obj.metadata.deletionTimestamp;
    if (d.status && (d.validator || d.statusOnlyThroughSubresource)) delete obj.status; // status is written only through /status
    this.admit(d, obj);
    store.set(k, obj);
    this.emit(d, 'ADDED', obj);
    return obj;
  }

  private doUpdate(
    d: ResourceDef,
    namespace: string | undefined,
    name: string,
    body: Obj,
    sub: 'status' | 'scale' | undefined,
    checkRv: boolean,
  ): Obj {
    const store = this.store.get(resKey(d))!;
    const k = this.key(d, namespace, name);
    const cur = store.get(k);
    if (!cur) throw this.notFound(d, name);
    if (checkRv && body.metadata?.resourceVersion && body.metadata.resourceVersion !== cur.metadata.resourceVersion) {
      throw new HttpError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${d.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      );
    }
    let next: Obj;
    if (sub === 'status') {
      next = { ...clone(cur), status: clone(body.status) };
    } else {
      next = { ...clone(body), apiVersion: cur.apiVersion, kind: cur.kind };
      if (d.status) next.status = clone(cur.status);
      const keep = ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'namespace', 'name'];
      next.metadata = { ...(body.metadata ?? {}) };
      for (const f of keep)
        if (cur.metadata[f] !== undefined) next.metadata[f] = cur.metadata[f];
        else delete next.metadata[f];
      if (
        cur.metadata.deletionTimestamp &&
        (next.metadata.finalizers ?? []).some((f: string) => !(cur.metadata.finalizers ?? []).includes(f))
      ) {
        throw new HttpError(422, 'Forbidden', 'no new finalizers can be added if the object is being deleted');
      }
      const specOf = (o: Obj) => {
        const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o;
        return JSON.stringify(rest);
      };
      if (specOf(next) !== specOf(cur)) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
      this.admit(d, next, cur);
    }
    if (sub === 'status' && d.validator) this.admit(d, next, cur);
    next.metadata.resourceVersion = cur.metadata.resourceVersion;
    if (JSON.stringify(next) === JSON.stringify(cur)) return cur; // a no-op write keeps the resourceVersion
    next.metadata.resourceVersion = String(++this.rv);
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      store.delete(k);
      this.emit(d, 'DELETED', next);
      this.collectGarbage(next.metadata.uid);
      return next;
    }
    store.set(k, next);
    this.emit(d, 'MODIFIED', next);
    return next;
  }

  private doDelete(d: ResourceDef, namespace: string | undefined, name: string): Obj {
    const store = this.store.get(resKey(d))!;
    const k = this.key(d, namespace, name);
    const cur = store.get(k);
    if (!cur) throw this.notFound(d, name);
    if ((cur.metadata.finalizers ?? []).length > 0) {
      if (cur.metadata.deletionTimestamp) return cur;
      const next = clone(cur);
      next.metadata.deletionTimestamp = new Date().toISOString();
      next.metadata.resourceVersion = String(++this.rv);
      store.set(k, next);
      this.emit(d, 'MODIFIED', next);
      return next;
    }
    store.delete(k);
    const gone = { ...clone(cur), metadata: { ...cur.metadata, resourceVersion: String(++this.rv) } };
    this.emit(d, 'DELETED', gone);
    this.collectGarbage(cur.metadata.uid);
    return { apiVersion: 'v1', kind: 'Status', status: 'Success', details: { name, kind: d.plural, uid: cur.metadata.uid } };
  }

  /** Background cascading deletion: every object whose ownerReferences name `uid`. */
  private collectGarbage(uid: string): void {
    for (const d of this.defs.values()) {
      for (const o of [...this.store.get(resKey(d))!.values()]) {
        if ((o.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === uid)) {
          try {
            this.doDelete(d, o.metadata.namespace, o.metadata.name);
          } catch {
            /* already gone */
          }
        }
      }
    }
  }

  private scale(
    d: ResourceDef,
    namespace: string | undefined,
    name: string,
    method: string,
    body: Obj | undefined,
    ct: string,
    res: http.ServerResponse,
  ): void {
    if (!d.scale) throw new HttpError(404, 'NotFound', `${d.plural} has no scale subresource`);
    const cur = this.store.get(resKey(d))!.get(this.key(d, namespace, name));
    if (!cur) throw this.notFound(d, name);
    const toScale = (o: Obj): Obj => ({
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: {
        name,
        namespace: o.metadata.namespace,
        uid: o.metadata.uid,
        resourceVersion: o.metadata.resourceVersion,
        creationTimestamp: o.metadata.creationTimestamp,
      },
      spec: { replicas: getPath(o, d.scale!.specReplicasPath) ?? 0 },
      status: {
        replicas: getPath(o, d.scale!.statusReplicasPath) ?? 0,
        ...(d.scale!.labelSelectorPath ? { selector: getPath(o, d.scale!.labelSelectorPath) ?? '' } : {}),
      },
    });
    if (method === 'GET') return this.send(res, 200, toScale(cur));
    if (method !== 'PUT' && method !== 'PATCH') throw new HttpError(405, 'MethodNotAllowed', `${method} not allowed on scale`);
    const scaleNow = toScale(cur);
    const wanted =
      method === 'PUT'
        ? (body ?? {})
        : ct.includes('json-patch')
          ? applyJsonPatch(scaleNow, body as unknown as Obj[])
          : (mergePatch(scaleNow, body) as Obj);
    const replicas = wanted.spec?.replicas;
    if (!Number.isInteger(replicas) || replicas < 0) throw new HttpError(422, 'Invalid', 'spec.replicas must be a non-negative integer');
    const next = clone(cur);
    setPath(next, d.scale.specReplicasPath, replicas);
    if (method === 'PUT' && wanted.metadata?.resourceVersion) next.metadata.resourceVersion = wanted.metadata.resourceVersion;
    const updated = this.doUpdate(d, namespace, name, next, undefined, method === 'PUT');
    this.send(res, 200, toScale(updated));
  }

  /** Server-side printing (kubectl get): a meta.k8s.io/v1 Table from the CRD's printer columns. */
  private table(d: ResourceDef, items: Obj[]): Obj {
    const cols = [
      { name: 'Name', type: 'string', jsonPath: '.metadata.name' },
      ...(d.printerColumns ?? [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }]),
    ];
    return {
      apiVersion: 'meta.k8s.io/v1',
      kind: 'Table',
      metadata: { resourceVersion: String(this.rv) },
      // priority > 0: kubectl shows the column only with -o wide.
      columnDefinitions: cols.map((c) => ({
        name: c.name,
        type: c.type,
        format: c.name === 'Name' ? 'name' : '',
        description: '',
        priority: (c as { priority?: number }).priority ?? 0,
      })),
      rows: items.map((o) => ({
        cells: cols.map((c) => {
          const v = jsonPathValue(o, c.jsonPath);
          return c.type === 'date' && typeof v === 'string' ? age(v) : (v ?? '<none>');
        }),
        object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
      })),
    };
  }

  // ---- watch -----------------------------------------------------------------------------------
  private emit(d: ResourceDef, type: WatchEvent['type'], obj: Obj): void {
    const ev: WatchEvent = { type, object: clone(obj), rv: Number(obj.metadata.resourceVersion), res: resKey(d) };
    this.log.push(ev);
    if (this.log.length > 20000) this.log.splice(0, 5000);
    for (const w of this.watchers) this.deliver(w, ev);
    for (const fn of this.listeners) {
      try {
        fn(ev);
      } catch {
        /* listeners must not break the server */
      }
    }
  }

  private deliver(w: Watcher, ev: WatchEvent): void {
    if (ev.res !== w.res) return;
    if (w.namespace && ev.object.metadata.namespace !== w.namespace) return;
    if (!w.selector(ev.object.metadata.labels)) return;
    w.resp.write(JSON.stringify({ type: ev.type, object: ev.object }) + '\n');
  }

  private watch(d: ResourceDef, namespace: string | undefined, url: URL, res: http.ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders(); // client-node resolves watch() only once headers arrive
    const w: Watcher = {
      res: resKey(d),
      namespace,
      selector: parseSelector(url.searchParams.get('labelSelector')),
      resp: res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
    };
    const rvText = url.searchParams.get('resourceVersion');
    const since = rvText ? Number(rvText) : 0;
    if (since > 0 && since < this.compactedRv) {
      res.end(
        JSON.stringify({
          type: 'ERROR',
          object: {
            kind: 'Status',
            apiVersion: 'v1',
            status: 'Failure',
            code: 410,
            reason: 'Expired',
            message: `too old resource version: ${since} (${this.compactedRv})`,
          },
        }) + '\n',
      );
      return;
    }
    if (since === 0) {
      for (const o of this.listBody(d, namespace, url.searchParams.get('labelSelector')).items)
        this.deliver(w, { type: 'ADDED', object: o, rv: Number(o.metadata.resourceVersion), res: w.res });
    } else {
      for (const ev of this.log) if (ev.rv > since) this.deliver(w, ev);
    }
    this.watchers.add(w);
    if (w.bookmarks) {
      w.timer = setInterval(() => {
        res.write(
          JSON.stringify({
            type: 'BOOKMARK',
            object: { kind: d.kind, apiVersion: this.apiVersion(d), metadata: { resourceVersion: String(this.rv) } },
          }) + '\n',
        );
      }, this.bookmarkIntervalMs);
    }
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    if (timeout > 0) setTimeout(() => this.endWatch(w), timeout * 1000).unref();
    res.on('close', () => this.endWatch(w));
  }

  /** Watch connections open now (a stopped informer must leave none). */
  get openWatches(): number {
    return this.watchers.size;
  }

  private endWatch(w: Watcher): void {
    if (!this.watchers.delete(w)) return;
    if (w.timer) clearInterval(w.timer);
    w.resp.end();
  }

  // ---- responses -------------------------------------------------------------------------------
  private send(res: http.ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private sendError(res: http.ServerResponse, e: unknown): void {
    const err = e instanceof HttpError ? e : new HttpError(500, 'InternalError', (e as Error)?.stack ?? String(e));
    if (res.headersSent) {
      res.end();
      return;
    }
    this.send(res, err.code, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: err.message,
      reason: err.reason,
      code: err.code,
    });
  }
}
