// TEST DOUBLE helper: what a kube-apiserver does to a custom resource before storing it, for the
// loopback API test double (./apiserver.ts): structural defaulting, pruning of unknown fields,
// openAPIV3Schema validation (ajv) and x-kubernetes-validations CEL rules (@marcbachmann/cel-js),
// including transition rules on oldSelf (evaluated only on update, where an old value exists).
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as celParse } from '@marcbachmann/cel-js';

type Schema = Record<string, unknown> & { properties?: Record<string, Schema>; items?: Schema };

export class CustomResourceValidator {
  private readonly validate: ValidateFunction;
  private readonly celCache = new Map<string, ReturnType<typeof celParse>>();

  constructor(private readonly schema: Schema) {
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    this.validate = ajv.compile(schema);
  }

  /** Defaults and prunes `obj` in place (as the apiserver does), then returns the list of errors. */
  admit(obj: Record<string, unknown>, old?: Record<string, unknown>): string[] {
    applyDefaults(this.schema, obj, true);
    const errors: string[] = [];
    if (!this.validate(obj)) {
      for (const e of this.validate.errors ?? []) errors.push(`${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
    }
    if (errors.length === 0) this.cel(this.schema, obj, old, '', errors);
    return errors;
  }

  private cel(schema: Schema, value: unknown, old: unknown, path: string, errors: string[]): void {
    if (value === undefined || value === null) return;
    const rules = schema['x-kubernetes-validations'] as { rule: string; message?: string }[] | undefined;
    for (const r of rules ?? []) {
      const transition = /\boldSelf\b/.test(r.rule);
      if (transition && old === undefined) continue;
      let fn = this.celCache.get(r.rule);
      if (!fn) {
        fn = celParse(r.rule);
        this.celCache.set(r.rule, fn);
      }
      let ok: unknown;
      try {
        ok = fn({ self: value, oldSelf: old });
      } catch (e) {
        ok = false;
        errors.push(`${path || '/'}: rule '${r.rule}' failed to evaluate: ${(e as Error).message}`);
        continue;
      }
      if (ok !== true) errors.push(`${path || '/'}: Invalid value: ${r.message ?? `failed rule: ${r.rule}`}`);
    }
    if (schema.properties && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, sub] of Object.entries(schema.properties)) {
        const v = (value as Record<string, unknown>)[k];
        const o = old && typeof old === 'object' ? (old as Record<string, unknown>)[k] : undefined;
        this.cel(sub, v, o, `${path}.${k}`, errors);
      }
    }
    if (schema.items && Array.isArray(value)) value.forEach((v, i) => this.cel(schema.items!, v, undefined, `${path}[${i}]`, errors));
  }
}

/** Structural defaulting and pruning. `top` keeps metadata/apiVersion/kind untouched. */
export function applyDefaults(schema: Schema, value: unknown, top = false): void {
  if (!value || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    if (schema.items) for (const v of value) applyDefaults(schema.items, v);
    return;
  }
  const rec = value as Record<string, unknown>;
  const props = schema.properties;
  if (props) {
    if (!top && !schema['x-kubernetes-preserve-unknown-fields'] && !schema.additionalProperties) {
      for (const k of Object.keys(rec)) if (!(k in props)) delete rec[k];
    }
    for (const [k, sub] of Object.entries(props)) {
      if (rec[k] === undefined && sub.default !== undefined) rec[k] = JSON.parse(JSON.stringify(sub.default));
      if (k !== 'metadata') applyDefaults(sub, rec[k]);
    }
  }
}
