import { describe, expect, it } from 'vitest';
import { airlockEnv, SIDECAR_NODE_OPTIONS } from './processes.ts';

describe('airlockEnv', () => {
  it('gives sidecars the recommended Node options, keeping options already set', () => {
    expect(airlockEnv(['sidecar', '--app-port', '1'], {}, {}).NODE_OPTIONS).toBe(SIDECAR_NODE_OPTIONS);
    expect(airlockEnv(['sidecar'], { NODE_OPTIONS: '--trace-warnings' }, { NODE_OPTIONS: '--inspect' }).NODE_OPTIONS).toBe(`${SIDECAR_NODE_OPTIONS} --trace-warnings`);
    expect(airlockEnv(['sidecar'], {}, { NODE_OPTIONS: '--inspect' }).NODE_OPTIONS).toBe(`${SIDECAR_NODE_OPTIONS} --inspect`);
  });

  it('leaves other commands their options; every process two malloc arenas unless set', () => {
    expect(airlockEnv(['control-plane'], { A: '1' }, { NODE_OPTIONS: '--inspect' })).toEqual({ A: '1', NODE_OPTIONS: '--inspect', MALLOC_ARENA_MAX: '2' });
    expect(airlockEnv(['sidecar'], {}, {}).MALLOC_ARENA_MAX).toBe('2');
    expect(airlockEnv(['sidecar'], { MALLOC_ARENA_MAX: '8' }, {}).MALLOC_ARENA_MAX).toBe('8');
    expect(airlockEnv(['control-plane'], {}, {}).NODE_OPTIONS).toBeUndefined();
  });
});
