import { describe, expect, it } from 'vitest';
import { lintStrict, renderError } from './support/helm-chart.ts';

// Each refusal must say what is wrong and where, before anything reaches the cluster.
describe('the chart refuses values it cannot honour, saying why', () => {
  it.each([
    ['a typo at the top', ['replicas=3'], "at '': additional properties 'replicas' not allowed"],
    ['a typo in a section', ['controlPlane.replicaz=3'], "at '/controlPlane': additional properties 'replicaz' not allowed"],
    ['a misspelt hardening field', ['controlPlane.securityContext.readOnlyRootFilesytem=true'], "at '/controlPlane/securityContext': additional properties 'readOnlyRootFilesytem' not allowed"],
    ['an unknown resource name', ['injection.resources.requests.cpus=1'], "at '/injection/resources/requests': additional properties 'cpus' not allowed"],
    ['a lower-case failure policy', ['webhook.failurePolicy=fail'], "at '/webhook/failurePolicy'"],
    ['a plain-HTTP webhook URL', ['webhook.url=http://127.0.0.1:15017/inject'], "at '/webhook/url'"],
    ['a sidecar resource the injector does not set', ['injection.resources.limits.ephemeral-storage=1Gi'], "at '/injection/resources/limits': additional properties 'ephemeral-storage' not allowed"],
    ['a token longer than a day', ['injection.tokenExpirationSeconds=86401'], "at '/injection/tokenExpirationSeconds'"],
    ['a token shorter than kubelet allows', ['injection.tokenExpirationSeconds=60'], "at '/injection/tokenExpirationSeconds'"],
    ['an unknown store', ['store.type=postgres'], "at '/store/type'"],
    ['an unknown CA source', ['ca.source=vault'], "at '/ca/source'"],
    ['an unknown audit spool policy', ['audit.spool.full=drop-newest'], "at '/audit/spool/full'"],
    ['a syslog collector without a port', ['audit.syslog.address=siem.example'], "at '/audit/syslog/address'"],
    ['a syslog collector as a URL', ['audit.syslog.address=tls://siem.example:6514'], "at '/audit/syslog/address'"],
    ['an audit HTTP sink that is not http(s)', ['audit.http.url=ftp://siem.example/raw'], "at '/audit/http/url'"],
  ])('%s', (_name, set, message) => {
    const error = renderError({ set });
    expect(error).toContain("values don't meet the specifications of the schema");
    expect(error).toContain(message);
    // lint says the same.
    expect(lintStrict({ set }).status).not.toBe(0);
  });

  it.each([
    ['several replicas on sqlite', ['controlPlane.replicas=3'], 'controlPlane.replicas is 3, but the sqlite store holds the state of one replica only: set store.type=etcd'],
    ['autoscaling on sqlite', ['autoscaling.enabled=true'], 'autoscaling.enabled with maxReplicas > 1 needs store.type=etcd'],
    ['etcd without endpoints', ['store.type=etcd'], 'store.type is etcd but store.etcd.endpoints is empty'],
    ['https etcd without its CA', ['store.type=etcd', 'store.etcd.endpoints={https://etcd-0:2379}'], 'https://etcd-0:2379 is https, which needs store.etcd.tlsSecret'],
    ['plain http etcd with a client certificate', ['store.type=etcd', 'store.etcd.endpoints={http://etcd-0:2379}', 'store.etcd.tlsSecret=etcd-client'], 'http://etcd-0:2379 is plain http, but store.etcd.tlsSecret is set'],
    ['a provided CA without its key', ['ca.source=provided', 'ca.provided.cert=x'], 'ca.source is provided: set ca.provided.cert and ca.provided.key'],
    ['an existing Secret without its name', ['ca.source=existingSecret'], 'ca.source is existingSecret: set ca.existingSecret'],
    ['an existing Secret that cannot be read, without a caBundle', ['ca.source=existingSecret', 'ca.existingSecret=mesh-ca'], 'the Secret airlock-system/mesh-ca cannot be read now'],
    ['cert-manager without an issuer', ['ca.source=certManager'], 'set ca.certManager.issuerRef.name'],
    ['a JWKS without its issuer', ['attestation.jwks.url=https://kubernetes.default.svc/openid/v1/jwks'], 'set attestation.jwks.issuer too'],
    ['a syslog client certificate without its Secret', ['audit.syslog.address=siem.example:6514', 'audit.syslog.clientCertificate=true'], 'audit.syslog.clientCertificate needs audit.syslog.tlsSecret'],
    ['extraConfig overriding what the chart sets', ['controlPlane.extraConfig.dataDir=/tmp'], 'controlPlane.extraConfig.dataDir: the chart sets dataDir itself'],
  ])('%s', (_name, set, message) => {
    expect(renderError({ set })).toContain(message);
  });

  it('passes extraConfig settings the chart does not own through', () => {
    // Refused by the control plane at start if unknown; the chart does not second-guess them.
    expect(() => renderError({ set: ['controlPlane.extraConfig.tlsMinVersion=TLSv1.3'] })).toThrow('helm template succeeded');
  });
});
