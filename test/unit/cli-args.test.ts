import { describe, expect, test } from '@jest/globals';
import { parseSize, parseIntOption } from '../../cli/args.js';
import { CliError } from '../../cli/errors.js';

describe('parseSize', () => {
  test('reads binary and decimal units', () => {
    expect(parseSize('64GiB', 'x')).toBe(64 * 2 ** 30);
    expect(parseSize('500MB', 'x')).toBe(500e6);
    expect(parseSize('1048576', 'x')).toBe(1048576);
    expect(parseSize('2G', 'x')).toBe(2e9);
    expect(parseSize('2Gi', 'x')).toBe(2 * 2 ** 30);
    expect(parseSize('1.5Mi', 'x')).toBe(1.5 * 2 ** 20);
    expect(() => parseSize('5mB', 'x')).toThrow(CliError);
  });
  test('rejects junk with a CliError', () => {
    expect(() => parseSize('lots', 'x')).toThrow(CliError);
    expect(() => parseSize('-5GB', 'x')).toThrow(CliError);
  });
});

describe('parseIntOption', () => {
  test('bounds are enforced', () => {
    expect(parseIntOption('5', 'n', 1, 10, 3)).toBe(5);
    expect(parseIntOption(undefined, 'n', 1, 10, 3)).toBe(3);
    expect(() => parseIntOption('0', 'n', 1, 10, 3)).toThrow('between 1 and 10');
    expect(() => parseIntOption('1.5', 'n', 1, 10, 3)).toThrow('integer');
  });
});
