import { policyYaml, startMesh, type Mesh } from './mesh.ts';

export const AGENTS = ['planner', 'researcher', 'payments'] as const;

/** The demo's policy: planner → researcher GET/POST /v1/*, planner → payments POST /v1/charge. */
export const STANDARD_POLICY = policyYaml('agents', AGENTS, [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET', 'POST'], paths: ['/v1/*'] },
  { name: 'planner-to-payments', from: 'planner', to: 'payments', methods: ['POST'], paths: ['/v1/charge'] },
]);

export function startStandardMesh(o: { authzTimeout?: string } = {}): Promise<Mesh> {
  return startMesh({ agents: AGENTS, policy: STANDARD_POLICY, ...o });
}
