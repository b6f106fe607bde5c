/** The demo mesh: three echo agents, their ports, and the policy between them. */
export const DEMO_TRUST_DOMAIN = 'airlock.demo';
export const DEMO_NAMESPACE = 'demo';

export interface DemoAgent {
  readonly name: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly appPort: number;
  readonly adminPort: number;
}

export const DEMO_AGENTS: readonly DemoAgent[] = [
  { name: 'planner', outboundPort: 15001, inboundPort: 15006, appPort: 18081, adminPort: 15020 },
  { name: 'researcher', outboundPort: 15101, inboundPort: 15106, appPort: 18082, adminPort: 15120 },
  { name: 'payments', outboundPort: 15201, inboundPort: 15206, appPort: 18083, adminPort: 15220 },
];

export const DEMO_CONTROL_PLANE = { grpcPort: 15012, adminPort: 15013, httpPort: 15014 };

export function demoIdentity(agent: string, trustDomain = DEMO_TRUST_DOMAIN): string {
  return `spiffe://${trustDomain}/ns/${DEMO_NAMESPACE}/sa/${agent}`;
}

/** planner → researcher GET/POST /v1/*; planner → payments POST /v1/charge; nothing else. */
export const DEMO_POLICY = `# Airlock demo policy: one segment per agent; anything not allowed here is denied.
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: planner }
spec:
  selector: { namespace: demo, serviceAccounts: [planner] }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researcher }
spec:
  selector: { namespace: demo, serviceAccounts: [researcher] }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: payments }
spec:
  selector: { namespace: demo, serviceAccounts: [payments] }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-to-researcher }
spec:
  from: { segments: [planner] }
  to: { segments: [researcher] }
  rules: [ { methods: [GET, POST], paths: ["/v1/*"] } ]
  action: allow
  mode: enforce
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-to-payments }
spec:
  from: { segments: [planner] }
  to: { segments: [payments] }
  rules: [ { methods: [POST], paths: ["/v1/charge"] } ]
  action: allow
  mode: enforce
`;
