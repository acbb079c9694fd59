// Placeholder until the operator command lands; replaced by its owner.
import { CliError } from './errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new CliError('operator: not implemented yet');
}
