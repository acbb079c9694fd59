// Tiny shared option parsing for the subcommands, on node:util parseArgs (strict: unknown flags
// and missing values are errors, reported as CliError).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from './errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export function parseCli<T extends OptionSpec>(argv: string[], options: T, command: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`);
  }
}

/** Parses "64GiB", "500MB", "1.5G", "1048576" into bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  if (!m) throw new CliError(`${what}: cannot read size '${text}' (examples: 64GiB, 500MB, 1048576)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const pow = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  const base = unit.includes('i') || unit.length === 1 && unit !== 'b' ? 1024 : 1000;
  const bytes = Math.round(n * base ** pow);
  if (!Number.isSafeInteger(bytes)) throw new CliError(`${what}: size '${text}' is too large`);
  return bytes;
}

/** Parses an integer option within [min, max]. */
export function parseIntOption(text: string | undefined, what: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^-?\d+$/.test(text.trim())) throw new CliError(`${what} must be an integer, got '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new CliError(`${what} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Parses a number option within [min, max]. */
export function parseNumberOption(text: string | undefined, what: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new CliError(`${what} must be a number, got '${text}'`);
  if (n < min || n > max) throw new CliError(`${what} must be between ${min} and ${max}, got ${n}`);
  return n;
}
