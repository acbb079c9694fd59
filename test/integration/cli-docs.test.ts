// Every flag a command's --help lists (the real, built CLI) is documented where users look for it:
// `hybridserve serve`'s in docs/server.md's synopsis and option table, the others in their page.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { runCli } from '../fixtures/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const doc = (name: string) => readFileSync(path.join(ROOT, 'docs', name), 'utf8');

function helpFlags(command: string): string[] {
  const r = runCli([command, '--help']);
  expect(r.code).toBe(0);
  const flags = new Set(r.stdout.match(/(?<![\w-])--[a-z][a-z0-9-]*/g) ?? []);
  flags.delete('--help');
  return [...flags].sort();
}

/** The text of a markdown section: from its heading to the next heading of the same level. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n${heading}\n`);
  expect(start).toBeGreaterThanOrEqual(0);
  const level = heading.split(' ')[0];
  const next = markdown.indexOf(`\n${level} `, start + heading.length + 2);
  return markdown.slice(start, next < 0 ? undefined : next);
}

describe('CLI flags are documented', () => {
  test('serve: every flag is in the synopsis and in the option table of docs/server.md', () => {
    const options = section(doc('server.md'), '## Options');
    const synopsis = options.slice(options.indexOf('```'), options.indexOf('```', options.indexOf('```') + 3));
    const table = options.slice(options.indexOf('| Option / env'));
    const flags = helpFlags('serve');
    expect(flags.length).toBeGreaterThan(20);
    expect(flags.filter((f) => !synopsis.includes(f))).toEqual([]);
    expect(flags.filter((f) => !table.includes(`\`${f}`))).toEqual([]);
  });

  test.each([
    ['generate', 'models.md'],
    ['plan', 'planning.md'],
    ['operator', 'operator.md'],
    ['gateway', 'gateway.md'],
  ])('%s: every flag is in docs/%s', (command, page) => {
    const text = doc(page);
    expect(helpFlags(command).filter((f) => !text.includes(f))).toEqual([]);
  });
});
