// For tests only: the policy the baseline tests decide under — agents (service account a) may call
// tools (service account b), and a Baseline document with `spec` judges the agents.

export function baselinePolicyYaml(spec: string): string {
  return `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: demo, serviceAccounts: [a] } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: demo, serviceAccounts: [b] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: to-tools }
spec: { from: { segments: [agents] }, to: { segments: [tools] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Baseline
metadata: { name: agents-normal }
spec: ${spec}
`;
}
