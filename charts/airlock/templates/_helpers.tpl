{{/* Ports are the product's (README "Ports"); values do not move them. */}}
{{- define "airlock.port.grpc" -}}15012{{- end }}
{{- define "airlock.port.admin" -}}15013{{- end }}
{{- define "airlock.port.http" -}}15014{{- end }}
{{- define "airlock.port.webhook" -}}15017{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "airlock.path.config" -}}/etc/airlock/config/config.yaml{{- end }}
{{- define "airlock.path.policy" -}}/etc/airlock/policy/policy.yaml{{- end }}
{{- define "airlock.path.injection" -}}/etc/airlock/injection/config.yaml{{- end }}
{{- define "airlock.path.ca" -}}/etc/airlock/ca{{- end }}
{{- define "airlock.path.etcd" -}}/etc/airlock/etcd{{- end }}
{{- define "airlock.path.data" -}}/var/lib/airlock{{- end }}
{{- define "airlock.path.auditHttp" -}}/etc/airlock/audit-http{{- end }}
{{- define "airlock.path.auditSyslog" -}}/etc/airlock/audit-syslog{{- end }}

{{- define "airlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name, or <release>-airlock when it does not already say airlock; room is left for "-control-plane-headless". */}}
{{- define "airlock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 38 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 38 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 38 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "airlock.controlPlane.name" -}}{{ include "airlock.fullname" . }}-control-plane{{- end }}
{{- define "airlock.controlPlane.headless" -}}{{ include "airlock.fullname" . }}-control-plane-headless{{- end }}
{{- define "airlock.ca.secretName" -}}
{{- if eq .Values.ca.source "existingSecret" }}{{ .Values.ca.existingSecret }}{{ else }}{{ include "airlock.fullname" . }}-ca{{ end }}
{{- end }}

{{- define "airlock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "airlock.controlPlane.name" .) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{- define "airlock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "airlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: airlock
{{- end }}

{{- define "airlock.controlPlane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "airlock.controlPlane.labels" -}}
{{ include "airlock.labels" . }}
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "airlock.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The address sidecars dial: the headless Service resolves to every ready replica. */}}
{{- define "airlock.controlPlane.address" -}}
{{- default (printf "%s.%s.svc:%s" (include "airlock.controlPlane.headless" .) .Release.Namespace (include "airlock.port.grpc" .)) .Values.injection.controlPlaneAddress }}
{{- end }}

{{/*
DNS names the serving certificate carries (besides localhost and 127.0.0.1), so the API server can
verify the webhook: the Service's names, and the host of webhook.url when that is a name.
*/}}
{{- define "airlock.serverDnsNames" -}}
{{- $svc := include "airlock.controlPlane.name" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- with .Values.webhook.url }}
{{- $host := (urlParse .).hostname }}
{{- if and $host (ne $host "localhost") (not (regexMatch "^[0-9.]+$|:" $host)) }}
{{- $names = append $names (lower $host) }}
{{- end }}
{{- end }}
{{- $names | uniq | join "," }}
{{- end }}

{{/*
The impossible combinations, refused with a message that says what to change. Every template
that depends on them calls it first, so the message is this one whichever Helm renders first.
*/}}
{{- define "airlock.validate" -}}
{{- $v := .Values }}
{{- if eq $v.store.type "sqlite" }}
{{- if gt (int $v.controlPlane.replicas) 1 }}
{{- fail (printf "controlPlane.replicas is %d, but the sqlite store holds the state of one replica only: set store.type=etcd with store.etcd.endpoints (see values-ha.yaml), or controlPlane.replicas=1" (int $v.controlPlane.replicas)) }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.maxReplicas) 1) }}
{{- fail "autoscaling.enabled with maxReplicas > 1 needs store.type=etcd: the sqlite store holds the state of one replica only" }}
{{- end }}
{{- end }}
{{- if and (eq $v.store.type "etcd") (empty $v.store.etcd.endpoints) }}
{{- fail "store.type is etcd but store.etcd.endpoints is empty: list the etcd client URLs (https://host:2379)" }}
{{- end }}
{{- if eq $v.store.type "etcd" }}
{{- range $v.store.etcd.endpoints }}
{{- if and (hasPrefix "https://" .) (empty $v.store.etcd.tlsSecret) }}
{{- fail (printf "store.etcd.endpoints: %s is https, which needs store.etcd.tlsSecret (the etcd CA, ca.crt, to verify the members)" .) }}
{{- end }}
{{- if and (hasPrefix "http://" .) $v.store.etcd.tlsSecret }}
{{- fail (printf "store.etcd.endpoints: %s is plain http, but store.etcd.tlsSecret is set: use https:// endpoints" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq $v.ca.source "provided") (or (empty $v.ca.provided.cert) (empty $v.ca.provided.key)) }}
{{- fail "ca.source is provided: set ca.provided.cert and ca.provided.key (PEM), and ca.provided.bundle unless cert is the root" }}
{{- end }}
{{- if and (eq $v.ca.source "existingSecret") (empty $v.ca.existingSecret) }}
{{- fail "ca.source is existingSecret: set ca.existingSecret to the name of a Secret with tls.crt, tls.key and ca.crt" }}
{{- end }}
{{- if and (eq $v.ca.source "certManager") (empty $v.ca.certManager.issuerRef.name) }}
{{- fail "ca.source is certManager: set ca.certManager.issuerRef.name (an Issuer or ClusterIssuer that can sign a CA)" }}
{{- end }}
{{- if and $v.attestation.jwks.url (empty $v.attestation.jwks.issuer) }}
{{- fail "attestation.jwks.url is set: set attestation.jwks.issuer too (the iss claim of the cluster's service-account tokens)" }}
{{- end }}
{{- end }}

{{/*
The CA as JSON {cert, key, bundle} (PEM), for `ca.source` generate or provided: made once per
render and kept on the root context, so the Secret, the webhook's caBundle and the pods' checksum
agree. A generated CA is read back from the Secret already in the cluster when there is one, so
`helm upgrade` never replaces the trust root.
*/}}
{{- define "airlock.ca.pems" -}}
{{- if not (hasKey $ "airlockCaPems") }}
{{- $pems := dict }}
{{- if eq .Values.ca.source "provided" }}
{{- $cert := .Values.ca.provided.cert }}
{{- $pems = dict "cert" $cert "key" .Values.ca.provided.key "bundle" (default $cert .Values.ca.provided.bundle) }}
{{- else if eq .Values.ca.source "generate" }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "airlock.ca.secretName" .) }}
{{- if and $existing (index ($existing.data | default dict) "tls.crt") }}
{{- $pems = dict "cert" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) "bundle" (index $existing.data "ca.crt" | b64dec) }}
{{- else }}
{{- $ca := genCA (printf "Airlock root CA (%s)" .Values.trustDomain) (int .Values.ca.generate.validityDays) }}
{{- $pems = dict "cert" $ca.Cert "key" $ca.Key "bundle" $ca.Cert }}
{{- end }}
{{- end }}
{{- $_ := set $ "airlockCaPems" $pems }}
{{- end }}
{{- index $ "airlockCaPems" | toJson }}
{{- end }}

{{/* The webhook's caBundle, base64, or "" when cert-manager's CA injector sets it. */}}
{{- define "airlock.webhook.caBundle" -}}
{{- if .Values.webhook.caBundle }}
{{- .Values.webhook.caBundle | b64enc }}
{{- else if has .Values.ca.source (list "generate" "provided") }}
{{- (include "airlock.ca.pems" . | fromJson).bundle | b64enc }}
{{- else if eq .Values.ca.source "existingSecret" }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.ca.existingSecret }}
{{- if and $secret (index ($secret.data | default dict) "ca.crt") }}
{{- index $secret.data "ca.crt" }}
{{- else }}
{{- fail (printf "ca.source is existingSecret and the Secret %s/%s cannot be read now (helm template, or it does not exist yet): create it first, or set webhook.caBundle to its ca.crt (PEM)" .Release.Namespace .Values.ca.existingSecret) }}
{{- end }}
{{- end }}
{{- end }}

{{/* What both webhook entries share: where the webhook is, what it sees, and that it fails closed. */}}
{{- define "airlock.webhook.common" -}}
clientConfig:
  {{- if .Values.webhook.url }}
  url: {{ .Values.webhook.url | quote }}
  {{- else }}
  service:
    name: {{ include "airlock.controlPlane.name" . }}
    namespace: {{ .Release.Namespace }}
    port: {{ include "airlock.port.webhook" . }}
    path: /inject
  {{- end }}
  {{- with include "airlock.webhook.caBundle" . }}
  caBundle: {{ . }}
  {{- end }}
rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE]
    resources: [pods]
    scope: Namespaced
failurePolicy: {{ .Values.webhook.failurePolicy }}
matchPolicy: Equivalent
sideEffects: None
admissionReviewVersions: [v1]
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
reinvocationPolicy: Never
{{- end }}
