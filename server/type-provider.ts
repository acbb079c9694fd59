// A Fastify type provider for @sinclair/typebox 0.34. @fastify/type-provider-typebox 6.x is typed
// against the newer `typebox` 1.x package (its peer dependency), so it is not a dependency; these
// few lines give route handlers the schemas' static types.
import type { FastifyPluginAsync, FastifyTypeProvider, RawServerDefault } from 'fastify';
import type { Static, TSchema } from '@sinclair/typebox';

export interface TypeBoxProvider extends FastifyTypeProvider {
  validator: this['schema'] extends TSchema ? Static<this['schema']> : unknown;
  serializer: this['schema'] extends TSchema ? Static<this['schema']> : unknown;
}

export type TypedPlugin<Options extends object> = FastifyPluginAsync<Options, RawServerDefault, TypeBoxProvider>;
