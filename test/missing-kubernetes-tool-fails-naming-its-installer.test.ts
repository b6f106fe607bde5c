import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { helmPath, kubeApiserverPath } from './support/k8s-tools.ts';

// A test that needs helm or kube-apiserver fails when it is missing (a skip would hide that the
// chart is no longer proven against a real API server), and says how to install it.
describe('a missing Kubernetes tool', () => {
  const saved = process.env.AIRLOCK_TOOLS_DIR;
  const empty = mkdtempSync(join(tmpdir(), 'airlock-tools-'));
  afterEach(() => {
    if (saved === undefined) delete process.env.AIRLOCK_TOOLS_DIR;
    else process.env.AIRLOCK_TOOLS_DIR = saved;
    rmSync(empty, { recursive: true, force: true });
  });

  it('is an error that names scripts/k8s-tools.sh', () => {
    process.env.AIRLOCK_TOOLS_DIR = empty;
    expect(() => helmPath()).toThrow(/helm v4\.3\.2 is not installed at .*helm-v4\.3\.2\/helm: run `bash scripts\/k8s-tools\.sh`/);
    expect(() => kubeApiserverPath()).toThrow(/kube-apiserver v1\.37\.2 is not installed at .*: run `bash scripts\/k8s-tools\.sh`/);
  });
});
