// The operator's small HTTP endpoint: /metrics (Prometheus text), /healthz (process alive and its
// loops running), /readyz (leader with synced caches, or a standby that is campaigning).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthSource {
  healthy(): boolean;
  ready(): boolean;
}

export async function startHealthServer(
  port: number,
  host: string,
  registry: Registry,
  health: HealthSource,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain') => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    if (path === '/metrics') {
      registry.metrics().then(
        (m) => reply(200, m, registry.contentType),
        (e) => reply(500, String(e)),
      );
      return;
    }
    if (path === '/healthz') {
      reply(health.healthy() ? 200 : 503, health.healthy() ? 'ok\n' : 'unhealthy\n');
      return;
    }
    if (path === '/readyz') {
      reply(health.ready() ? 200 : 503, health.ready() ? 'ok\n' : 'not ready\n');
      return;
    }
    reply(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
