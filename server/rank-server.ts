// A pipeline rank other than the leader (issue 15): it runs its stage for rank 0, which owns the
// engine core and the API, and answers /healthz only (200 while the stage runs), so that the pod's
// liveness probe works and nothing else is served from a partial model.
import Fastify from 'fastify';
import { Health } from './schemas/ops.js';
import type { TypeBoxProvider } from './type-provider.js';

export interface RankHealth {
  address: string;
  close(): Promise<void>;
}

export async function listenRankHealth(host: string, port: number, rank: number): Promise<RankHealth> {
  const app = Fastify({ logger: false }).withTypeProvider<TypeBoxProvider>();
  app.get('/healthz', { schema: { response: { 200: Health } } }, async () => ({ status: 'ok', reason: `pipeline rank ${rank}` }));
  const address = await app.listen({ host, port });
  return { address, close: () => app.close() };
}
