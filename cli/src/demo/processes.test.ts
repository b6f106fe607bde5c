import { describe, expect, it } from 'vitest';
import { airlockEnv, SIDECAR_NODE_OPTIONS } from './processes.ts';

describe('airlockEnv', () => {
  it('gives sidecars the recommended Node options, keeping options already set', () => {
    expect(airlockEnv(['sidecar', '--app-port', '1'], {}, {}).NODE_OPTIONS).toBe(SIDECAR_NODE_OPTIONS);
    expect(airlockEnv(['sidecar'], { NODE_OPTIONS: '--trace-warnings' }, { NODE_OPTIONS: '--inspect' }).NODE_OPTIONS).toBe(`${SIDECAR_NODE_OPTIONS} --trace-warnings`);
    expect(airlockEnv(['sidecar'], {}, { NODE_OPTIONS: '--inspect' }).NODE_OPTIONS).toBe(`${SIDECAR_NODE_OPTIONS} --inspect`);
  });

  it('leaves other commands as they are', () => {
    expect(airlockEnv(['control-plane'], { A: '1' }, { NODE_OPTIONS: '--inspect' })).toEqual({ A: '1', NODE_OPTIONS: '--inspect' });
    expect(airlockEnv(['control-plane'], {}, {}).NODE_OPTIONS).toBeUndefined();
  });
});
