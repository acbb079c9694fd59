import { describe, expect, test } from '@jest/globals';
import { KNOWN_PRODUCTS, PlanError, hardwareProfile, requireHardwareProfile, withMeasured } from '../../planning/index.js';

describe('hardware profiles', () => {
  test('every product the brief names resolves, with positive numbers', () => {
    const names = [
      'NVIDIA-H100-80GB-HBM3',
      'NVIDIA-H100-PCIe',
      'NVIDIA-H100-NVL',
      'NVIDIA-H200',
      'NVIDIA-H200-141GB-HBM3e',
      'NVIDIA-A100-SXM4-40GB',
      'NVIDIA-A100-SXM4-80GB',
      'NVIDIA-A100-80GB-PCIe',
      'NVIDIA-L40S',
      'NVIDIA-L4',
      'NVIDIA-A10G',
      'NVIDIA-GeForce-RTX-4090',
      'Tesla-T4',
    ];
    for (const n of names) {
      const p = hardwareProfile(n);
      expect(p).toBeDefined();
      for (const k of ['h2dBytesPerSecond', 'd2hBytesPerSecond', 'gemmFlops', 'hbmBytes', 'hbmBytesPerSecond'] as const) {
        expect(p![k]).toBeGreaterThan(0);
      }
    }
    for (const n of KNOWN_PRODUCTS) expect(hardwareProfile(n)?.product).toBe(n);
  });

  test('lookup tolerates case, spaces, missing vendor prefix and the SHARED suffix', () => {
    const canonical = hardwareProfile('NVIDIA-H100-80GB-HBM3')!;
    for (const v of [
      'nvidia-h100-80gb-hbm3',
      'NVIDIA H100 80GB HBM3',
      'H100-80GB-HBM3',
      ' NVIDIA-H100-80GB-HBM3-SHARED ',
      'H100-SXM5-80GB',
    ]) {
      expect(hardwareProfile(v)?.product).toBe(canonical.product);
    }
    expect(hardwareProfile('T4')?.product).toBe('Tesla-T4');
    expect(hardwareProfile('NVIDIA GeForce RTX 4090')?.product).toBe('NVIDIA-GeForce-RTX-4090');
    expect(hardwareProfile('NVIDIA-H200-141GB-HBM3e')?.product).toBe('NVIDIA-H200');
  });

  test('unknown products give undefined, and requireHardwareProfile lists the known ones', () => {
    expect(hardwareProfile('NVIDIA-B9000')).toBeUndefined();
    expect(hardwareProfile('')).toBeUndefined();
    expect(() => requireHardwareProfile('NVIDIA-B9000')).toThrow(PlanError);
    expect(() => requireHardwareProfile('NVIDIA-B9000')).toThrow(/NVIDIA-H100-80GB-HBM3.*Tesla-T4/);
  });

  test('a MIG slice gets the slice memory and a share of the compute', () => {
    const full = hardwareProfile('NVIDIA-A100-SXM4-40GB')!;
    const mig = hardwareProfile('NVIDIA-A100-SXM4-40GB-MIG-3g.20gb')!;
    expect(mig.hbmBytes).toBe(20e9);
    expect(mig.gemmFlops).toBeCloseTo((full.gemmFlops * 3) / 7);
    expect(mig.product).toBe('NVIDIA-A100-SXM4-40GB-MIG-3g.20gb');
  });

  test('the faster links and GPUs rank as expected', () => {
    const h100 = hardwareProfile('NVIDIA-H100-80GB-HBM3')!;
    const a100 = hardwareProfile('NVIDIA-A100-SXM4-80GB')!;
    const t4 = hardwareProfile('Tesla-T4')!;
    expect(h100.h2dBytesPerSecond).toBeGreaterThan(a100.h2dBytesPerSecond);
    expect(a100.h2dBytesPerSecond).toBeGreaterThan(t4.h2dBytesPerSecond);
    expect(h100.gemmFlops).toBeGreaterThan(a100.gemmFlops);
    expect(hardwareProfile('NVIDIA-H200')!.hbmBytes).toBeGreaterThan(h100.hbmBytes);
  });

  test('measured values override the table; zeros and junk do not', () => {
    const t = hardwareProfile('NVIDIA-L4')!;
    const m = withMeasured(t, { h2dBytesPerSecond: 20e9, gemmFlops: 0, d2hBytesPerSecond: Number.NaN });
    expect(m.h2dBytesPerSecond).toBe(20e9);
    expect(m.gemmFlops).toBe(t.gemmFlops);
    expect(m.d2hBytesPerSecond).toBe(t.d2hBytesPerSecond);
    expect(m.measured).toEqual(['h2dBytesPerSecond']);
    expect(t.measured).toBeUndefined(); // the table entry is not mutated
    expect(hardwareProfile('NVIDIA-L4')!.h2dBytesPerSecond).toBe(t.h2dBytesPerSecond);
  });
});
