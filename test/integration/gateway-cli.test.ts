// `hybridserve gateway` as a process (needs `npm run build`): clear errors and exit code 2 for bad
// flags, and a running gateway in --upstream mode that proxies and stops on SIGTERM.
import { describe, test, expect } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../k8s/kubelet.js';

const ROOT = join(import.meta.dirname ?? process.cwd(), '..', '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');

describe('hybridserve gateway', () => {
  test.each([
    [[], /--deployment NAME \(or --upstream URL\) is required/],
    [['--upstream', 'ftp://x'], /--upstream must be an http:\/\/ URL/],
    [['--deployment', 'x', '--routing', 'nope'], /--routing must be prefix or round-robin/],
    [['--deployment', 'x', '--port', '70000'], /--port must be between 0 and 65535/],
    [['--deployment', 'x', '--advertise-url', 'javascript:x'], /--advertise-url must be an http\(s\):\/\/ URL/],
  ])('%p is refused with exit code 2', (args, message) => {
    const r = spawnSync(process.execPath, [MAIN, 'gateway', ...args], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test('proxies to an --upstream and exits 0 on SIGTERM', async () => {
    const up = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = await freePort();
    const p = spawn(
      process.execPath,
      [
        MAIN,
        'gateway',
        '--upstream',
        `http://127.0.0.1:${(up.address() as AddressInfo).port}`,
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        p.stdout.on('data', (b: Buffer) => {
          if (b.toString().includes('listening')) resolve();
        });
        p.on('exit', (c) => reject(new Error(`exited ${c}`)));
      });
      const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"prompt":"hi"}',
      });
      expect(await res.json()).toEqual({ ok: true });
      const exit = new Promise<number | null>((r) => p.on('exit', r));
      p.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      p.kill('SIGKILL');
      up.close();
    }
  }, 30_000);
});
