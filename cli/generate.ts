// Placeholder until the generate command lands; replaced by its owner.
import { CliError } from './errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new CliError('generate: not implemented yet');
}
