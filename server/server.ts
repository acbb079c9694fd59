// The only file that listens. Starts the app on host:port and shuts it down gracefully on
// SIGTERM/SIGINT: readiness fails first, new requests get 503, in-flight requests get the grace
// period to finish, then the app (scheduler, plan watcher) and the engine close.
import closeWithGrace from 'close-with-grace';
import type { Serving } from './serving.js';

export interface ListenOptions {
  host: string;
  port: number;
}

export async function listen(serving: Serving, opts: ListenOptions): Promise<string> {
  const { app } = serving;
  // Header, body and keep-alive timeouts are set in buildApp (server/app.ts); generation time is
  // the scheduler's request timeout. Beyond the connection cap new sockets are closed at once.
  app.server.maxConnections = serving.ctx.limits.maxConnections;
  return app.listen({ host: opts.host, port: opts.port });
}

/** Installs the signal handlers; resolves when the process should exit. */
export function closeOnSignals(
  serving: Serving,
  onClosed: () => Promise<void>,
  log: { info(m: string): void; error(m: string): void },
): void {
  const grace = serving.ctx.limits.shutdownGraceMs;
  closeWithGrace({ delay: grace + 5_000, logger: { error: (m: unknown) => log.error(String(m)) } }, async ({ signal, err }) => {
    if (err) log.error(`shutting down after an error: ${err.stack ?? err.message}`);
    else log.info(`${signal ?? 'close'} received: draining (up to ${grace / 1000} s)`);
    await serving.shutdown(grace);
    await onClosed();
    log.info('server closed');
  });
}
