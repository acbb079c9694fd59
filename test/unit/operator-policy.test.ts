// The HSD policy (pure): image patterns, PVC and Secret references; the operator's env parsing
// fails closed (only the project's images without configuration; bad booleans are errors).
import { describe, test, expect } from '@jest/globals';
import { DEFAULT_ALLOWED_IMAGES, imageAllowed, parsePolicy, policyViolations } from '../../operator/desired/policy.js';
import { resolveSpec } from '../../operator/api/defaults.js';

describe('HSD policy', () => {
  test('image patterns: * matches any run of characters, everything else literally', () => {
    expect(imageAllowed('ghcr.io/hybridserve/hybridserve:0.1.0-cpu', DEFAULT_ALLOWED_IMAGES)).toBe(true);
    expect(imageAllowed('ghcr.io/hybridserve/hybridserve@sha256:abc', DEFAULT_ALLOWED_IMAGES)).toBe(true);
    expect(imageAllowed('ghcr.io/hybridserve/hybridserve-evil:1', DEFAULT_ALLOWED_IMAGES)).toBe(false);
    expect(imageAllowed('ghcrXio/hybridserve/hybridserve:1', ['ghcr.io/hybridserve/hybridserve:*'])).toBe(false);
    expect(imageAllowed('anything', ['*'])).toBe(true);
    expect(imageAllowed('anything', [])).toBe(false);
  });

  test('the CRD default image is allowed by the default policy; violations name what was refused', () => {
    const base = resolveSpec({ model: { uri: 'synthetic:opt-13b' } });
    const policy = parsePolicy({});
    expect(policy).toEqual({ allowedImages: DEFAULT_ALLOWED_IMAGES, allowPvc: true, allowSecrets: true });
    expect(policyViolations(base, policy)).toEqual([]);
    const strict = parsePolicy({ allowedImages: 'registry.local/*', allowPvc: 'false', allowSecrets: 'false' });
    const v = policyViolations(
      resolveSpec({ model: { uri: 'pvc://w/m', preset: 'opt-13b' }, server: { apiKeySecretRef: { name: 's', key: 'k' } } }),
      strict,
    );
    expect(v).toHaveLength(3);
    expect(v[0]).toMatch(/image 'ghcr\.io\/hybridserve\/hybridserve:0\.1\.0' matches none of the allowed patterns \(registry\.local\/\*\)/);
  });

  test('fails closed: an empty pattern list allows nothing; a bad boolean is an error', () => {
    expect(parsePolicy({ allowedImages: ' , ' }).allowedImages).toEqual([]);
    expect(() => parsePolicy({ allowPvc: 'yes' })).toThrow(/HYBRIDSERVE_POLICY_ALLOW_PVC must be true or false/);
  });
});
