{{/*
Names, labels and small shared blocks. Every resource is named "<fullname>-<part>" and carries
the app.kubernetes.io/* labels, including app.kubernetes.io/component: "api" or
"consumer-<destination>".
*/}}

{{/* Chart name (nameOverride wins). */}}
{{- define "datasync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix: fullnameOverride, else "<release>-<name>", or the release name alone if it
already contains the chart name. Truncated so that "<fullname>-consumer-<destination>" stays
within the 63-character limit for names and label values.
*/}}
{{- define "datasync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "datasync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every resource (no component). */}}
{{- define "datasync.commonLabels" -}}
helm.sh/chart: {{ include "datasync.chart" . }}
app.kubernetes.io/name: {{ include "datasync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datasync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels for a component. Call with (dict "ctx" $ "component" "api").
*/}}
{{- define "datasync.labels" -}}
{{ include "datasync.commonLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels for a component: (dict "ctx" $ "component" "api"). Immutable: keep small. */}}
{{- define "datasync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datasync.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "datasync.configMapName" -}}
{{- printf "%s-config" (include "datasync.fullname" .) }}
{{- end }}

{{/*
The Secret the pods and the KEDA TriggerAuthentication read: the chart's (secrets.create), the
one the ExternalSecret writes (secrets.externalSecret), or yours (secrets.existingSecret).
*/}}
{{- define "datasync.secretName" -}}
{{- if or .Values.secrets.create .Values.secrets.externalSecret.enabled }}
{{- printf "%s-secrets" (include "datasync.fullname" .) }}
{{- else }}
{{- required "secrets.create is false: turn on secrets.externalSecret, or name your Secret in secrets.existingSecret (keys DATASYNC_API_KEYS and DATABASE_URL)" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{/* Whether the migration Job runs: not for throwaway SQLite stores, which live in each pod. */}}
{{- define "datasync.migrationsEnabled" -}}
{{- if and .Values.migrations.enabled (not .Values.devOnly.ephemeralSqliteStores) }}true{{ end }}
{{- end }}

{{- define "datasync.migrate.fullname" -}}
{{- printf "%s-migrate" (include "datasync.fullname" .) }}
{{- end }}

{{/*
The Secret the migration Job reads. A pre-install hook runs before the release's own resources
exist, so the chart's Secret (or the one its ExternalSecret writes) is not there yet: the Job gets
a hook Secret of its own, created just before it and deleted after it, holding only the database
URLs. Your own Secret (existingSecret) exists beforehand and is read as it is.
*/}}
{{- define "datasync.migrate.secretName" -}}
{{- if or .Values.secrets.create .Values.secrets.externalSecret.enabled }}
{{- include "datasync.migrate.fullname" . }}
{{- else }}
{{- include "datasync.secretName" . }}
{{- end }}
{{- end }}

{{/* Hook annotations of the migration Job's helpers (weight -10: created before the Job). */}}
{{- define "datasync.migrate.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded,hook-failed
{{- end }}

{{/*
Refusals of values that would deploy something that does not do what it seems to (each message
says what to set):
- outside local mode, a chart-made Secret without API keys: `lookup`, which keeps a generated key
  across upgrades, sees nothing under `helm template` and GitOps tools, so every sync would make a
  new key and lock every client out;
- an ExternalSecret beside secrets.create or existingSecret (two owners of one Secret), or
  without its store and keys;
- an Ingress without TLS outside local mode (API keys travel in headers);
- KEDA's identityOwner: workload for a consumer without an IRSA role: KEDA reads the role from
  the ServiceAccount's annotation, which EKS Pod Identity does not set, and would fall back to
  failing its queue checks.
*/}}
{{- define "datasync.validate" -}}
{{- $local := eq .Values.config.env "local" }}
{{- $sec := .Values.secrets }}
{{- if and $sec.create (not $local) (not $sec.apiKeys) }}
{{- fail (printf "secrets.apiKeys is empty with secrets.create=true and config.env=%s: the chart would generate a key, but `lookup` (which keeps it across upgrades) sees nothing under `helm template` and GitOps tools (Argo CD, Flux), so every sync would make a new key and lock every client out. Set secrets.apiKeys (each key 32+ characters: python -c 'import secrets; print(secrets.token_urlsafe(32))'), or keep the keys out of Helm with secrets.create=false and secrets.externalSecret (SSM Parameter Store, Secrets Manager) or secrets.existingSecret" .Values.config.env) }}
{{- end }}
{{- $es := $sec.externalSecret }}
{{- if $es.enabled }}
{{- if $sec.create }}
{{- fail "secrets.externalSecret.enabled and secrets.create both write the chart's Secret: set secrets.create=false" }}
{{- end }}
{{- if $sec.existingSecret }}
{{- fail (printf "secrets.externalSecret writes %s-secrets; secrets.existingSecret (%s) would be ignored: leave it empty" (include "datasync.fullname" .) $sec.existingSecret) }}
{{- end }}
{{- if not $es.secretStoreRef.name }}
{{- fail "secrets.externalSecret.secretStoreRef.name is empty: name the SecretStore or ClusterSecretStore that reads SSM Parameter Store or Secrets Manager" }}
{{- end }}
{{- if not (and $es.apiKeys.key $es.databaseUrl.key) }}
{{- fail "secrets.externalSecret needs apiKeys.key and databaseUrl.key: the remote keys (parameter or secret names) of DATASYNC_API_KEYS and DATABASE_URL" }}
{{- end }}
{{- end }}
{{- $ing := .Values.api.ingress }}
{{- if and .Values.api.enabled $ing.enabled (not $local) (not $ing.allowWithoutTls) }}
{{- if not (or $ing.tls (index ($ing.annotations | default dict) "alb.ingress.kubernetes.io/certificate-arn")) }}
{{- fail "api.ingress has no TLS: outside config.env=local API keys would cross the network in clear. Add api.ingress.tls blocks, or for the AWS Load Balancer Controller the annotation alb.ingress.kubernetes.io/certificate-arn (with listen-ports 443: see deploy/prod/values.yaml); set api.ingress.allowWithoutTls=true only if TLS ends before the Ingress" }}
{{- end }}
{{- end }}
{{- $pi := .Values.keda.authentication.podIdentity }}
{{- if and .Values.keda.enabled (eq .Values.keda.authentication.mode "podIdentity") (eq $pi.identityOwner "workload") }}
{{- range (include "datasync.consumers" . | fromYaml).items }}
{{- if not .serviceAccount.roleArn }}
{{- fail (printf "keda.authentication.podIdentity.identityOwner=workload, but consumers.%s.serviceAccount.roleArn is empty: KEDA reads the role to assume from the ServiceAccount's eks.amazonaws.com/role-arn annotation (IRSA only; with EKS Pod Identity the ServiceAccount carries none). Set the consumer's roleArn (IRSA), or leave identityOwner empty and give the KEDA operator a role that may read the queues (Terraform keda_role_arn)" .destination) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "datasync.api.fullname" -}}
{{- printf "%s-api" (include "datasync.fullname" .) }}
{{- end }}

{{/*
DATASYNC_API_TRUSTED_PROXIES: api.trustedProxies, or when null 1 behind the chart's Ingress, else 0.
*/}}
{{- define "datasync.api.trustedProxies" -}}
{{- $api := .Values.api }}
{{- if kindIs "invalid" $api.trustedProxies }}{{ ternary 1 0 $api.ingress.enabled }}{{ else }}{{ int $api.trustedProxies }}{{ end }}
{{- end }}

{{/*
Who may reach the API and metrics ports, refused when it would let a pod lie about itself.

The API counts wrong keys per client address; with trusted proxies that address comes from
X-Forwarded-For, which any pod that reaches the API port can write. So trusted proxies need the
NetworkPolicy to admit the API port from the proxies alone (networkPolicy.ingressControllerFrom).
And a scraper turned on (ServiceMonitors or the scrape annotations) must be named in
networkPolicy.metricsIngressFrom: no one else reaches the metrics ports.
*/}}
{{- define "datasync.validateNetworkAccess" -}}
{{- $np := .Values.networkPolicy }}
{{- $trusted := include "datasync.api.trustedProxies" . | int }}
{{- if and .Values.api.enabled (gt $trusted 0) }}
{{- $why := printf "the API trusts %d proxy(ies) to name the client in X-Forwarded-For (api.trustedProxies, or api.ingress.enabled), so any pod that reaches the API port could pose as any client and escape the wrong-key limit" $trusted }}
{{- if not $np.enabled }}
{{- fail (printf "%s: keep networkPolicy.enabled=true with networkPolicy.ingressControllerFrom naming the proxies, or set api.trustedProxies=0" $why) }}
{{- end }}
{{- if not $np.ingressControllerFrom }}
{{- fail (printf "%s: set networkPolicy.ingressControllerFrom to the ingress controller's pods, e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}] (a load balancer that targets pods: an ipBlock of its subnets), or set api.trustedProxies=0" $why) }}
{{- end }}
{{- if $np.apiIngressFrom }}
{{- fail (printf "%s: networkPolicy.apiIngressFrom would admit other sources to the API port; with trusted proxies only networkPolicy.ingressControllerFrom is admitted, so move the proxies there and leave apiIngressFrom empty" $why) }}
{{- end }}
{{- end }}
{{- $m := .Values.metrics }}
{{- if and $np.enabled (or $m.podAnnotations $m.serviceMonitor.enabled) (not $np.metricsIngressFrom) }}
{{- fail "metrics.serviceMonitor.enabled or metrics.podAnnotations asks Prometheus to scrape the metrics ports, but networkPolicy.metricsIngressFrom is empty, which admits no one: set it to where Prometheus runs, e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]" }}
{{- end }}
{{- end }}

{{- define "datasync.api.serviceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "datasync.api.fullname" .) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Deep merge for consumer entries: keys of "over" win, nested maps are merged key by key. Unlike
sprig's merge/mergeOverwrite it keeps false and 0 from "over" (e.g. enabled: false).
Call with (dict "base" $defaults "over" $entry); returns YAML (use fromYaml).
*/}}
{{- define "datasync.deepMerge" -}}
{{- $base := .base | default dict }}
{{- $over := .over | default dict }}
{{- $out := dict }}
{{- range $k, $v := $base }}
{{- if hasKey $over $k }}
{{- $o := get $over $k }}
{{- if and (kindIs "map" $v) (kindIs "map" $o) }}
{{- $_ := set $out $k (include "datasync.deepMerge" (dict "base" $v "over" $o) | fromYaml) }}
{{- else }}
{{- $_ := set $out $k $o }}
{{- end }}
{{- else }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- range $k, $o := $over }}
{{- if not (hasKey $base $k) }}
{{- $_ := set $out $k $o }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
A consumer entry with consumerDefaults under it: (dict "ctx" $ "consumer" $entry). Returns YAML.
*/}}
{{- define "datasync.consumer.merged" -}}
{{- include "datasync.deepMerge" (dict "base" .ctx.Values.consumerDefaults "over" .consumer) }}
{{- end }}

{{/*
The consumers entries as a list: `consumers` is a map keyed by destination (values files merge it
key by key) or a list of entries that name their destination.
*/}}
{{- define "datasync.consumerEntries" -}}
{{- $entries := list }}
{{- if kindIs "map" .Values.consumers }}
{{- range $destination, $entry := .Values.consumers }}
{{- $e := deepCopy ($entry | default dict) }}
{{- if and (hasKey $e "destination") (ne (toString $e.destination) $destination) }}
{{- fail (printf "consumers.%s.destination is %q: under the map form the key is the destination; remove it" $destination $e.destination) }}
{{- end }}
{{- $_ := set $e "destination" $destination }}
{{- $entries = append $entries $e }}
{{- end }}
{{- else }}
{{- $entries = .Values.consumers }}
{{- end }}
{{- toYaml (dict "entries" $entries) }}
{{- end }}

{{/* Enabled consumers, merged with the defaults, as a YAML list under "items". */}}
{{- define "datasync.consumers" -}}
{{- $items := list }}
{{- range (include "datasync.consumerEntries" . | fromYaml).entries }}
{{- $c := include "datasync.consumer.merged" (dict "ctx" $ "consumer" .) | fromYaml }}
{{- if $c.enabled }}
{{- $items = append $items $c }}
{{- end }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/* "<fullname>-consumer-<destination>": (dict "ctx" $ "destination" "crm"). */}}
{{- define "datasync.consumer.fullname" -}}
{{- printf "%s-consumer-%s" (include "datasync.fullname" .ctx) .destination | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Service account of a consumer: (dict "ctx" $ "consumer" $merged). */}}
{{- define "datasync.consumer.serviceAccountName" -}}
{{- $sa := .consumer.serviceAccount }}
{{- if $sa.create }}
{{- default (include "datasync.consumer.fullname" (dict "ctx" .ctx "destination" .consumer.destination)) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
The ServiceMonitors and the PrometheusRule are Prometheus Operator kinds. Without its API the
install fails here, naming the way out, rather than with "no matches for kind" from the API server
or, worse, by leaving out the alerts the operator asked for.
Call with (dict "ctx" $ "value" "metrics.serviceMonitor.enabled").
*/}}
{{- define "datasync.requirePrometheusOperator" -}}
{{- if not (.ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
{{- fail (printf "%s is true, but the cluster does not serve monitoring.coreos.com/v1 (the Prometheus Operator's CRDs): install the Prometheus Operator (e.g. kube-prometheus-stack) first, or set %s=false (metrics.podAnnotations needs no operator). With `helm template`, pass --api-versions monitoring.coreos.com/v1" .value .value) }}
{{- end }}
{{- end }}

{{- define "datasync.triggerAuthName" -}}
{{- printf "%s-aws" (include "datasync.fullname" .) }}
{{- end }}

{{/* "repository:tag" or "repository@digest": (dict "ctx" $ "image" .Values.api.image). */}}
{{- define "datasync.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Pod-level security context (restricted Pod Security Standard). */}}
{{- define "datasync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context (restricted Pod Security Standard). */}}
{{- define "datasync.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment shared by every container: settings come from the ConfigMap (envFrom); AWS static
credentials from the Secret only when aws.staticCredentials is on (kind + local emulator).
*/}}
{{- define "datasync.awsCredentialsEnv" -}}
{{- if .Values.aws.staticCredentials }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "datasync.secretName" . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "datasync.secretName" . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}

{{/*
The status page's queues, for the API only: the intake's and each enabled destination's queue,
DLQ and buffer queue, under the names datasync/settings.py reads (queue_setting_name).
*/}}
{{- define "datasync.api.statusPageEnv" -}}
{{- with .Values.config.intakeQueueUrl }}
- name: DATASYNC_INTAKE_QUEUE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.intakeDlqUrl }}
- name: DATASYNC_INTAKE_DLQ_URL
  value: {{ . | quote }}
{{- end }}
{{- range (include "datasync.consumers" . | fromYaml).items }}
{{- $c := . }}
{{- range $suffix, $key := dict "QUEUE_URL" "queueUrl" "DLQ_URL" "dlqUrl" "BUFFER_QUEUE_URL" "bufferQueueUrl" }}
{{- with get $c $key }}
- name: {{ printf "DATASYNC_%s_%s" (upper $c.destination) $suffix }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* extraEnv map -> env list, sorted by name. */}}
{{- define "datasync.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
checkov waivers, as checkov.io/skipN annotations on the workload: the reason is part of the
annotation, so it is reviewed with the chart. Each one is rendered only where it applies.
Call with (dict "image" <image values> "secretEnv" true|false).
- CKV_K8S_43 (image by digest): set image.digest to deploy by digest (then no waiver); tags are
  needed for kind, where skaffold loads images that are never pushed.
- CKV_K8S_15 (imagePullPolicy Always): IfNotPresent is required for images loaded into kind; in a
  registry use immutable tags or image.digest.
- CKV_K8S_35 (secrets as files): the app reads its settings from the environment (12-factor, the
  same code as in Lambda); each container gets only the Secret keys it needs.
*/}}
{{- define "datasync.checkovWaivers" -}}
{{- if not .image.digest }}
checkov.io/skip1: CKV_K8S_43=Tags are required for kind-loaded dev images; production can set image.digest
{{- end }}
{{- if ne .image.pullPolicy "Always" }}
checkov.io/skip2: CKV_K8S_15=IfNotPresent is required for kind-loaded images; use immutable tags or image.digest
{{- end }}
{{- if .secretEnv }}
checkov.io/skip3: CKV_K8S_35=The app reads settings from env vars by design (12-factor); each container gets only its keys
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule to the cluster DNS: call with .Values.networkPolicy. */}}
{{- define "datasync.netpol.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/* NetworkPolicy egress rule to AWS (or the emulator): call with .Values.networkPolicy. */}}
{{- define "datasync.netpol.awsEgress" -}}
- to:
    {{- range .awsEgress.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .awsEgress.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}

{{/* Egress to the EKS Pod Identity agent and the extra rules: call with .Values.networkPolicy. */}}
{{- define "datasync.netpol.extraEgress" -}}
{{- if .podIdentityAgent.enabled }}
- to:
    {{- range .podIdentityAgent.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ .podIdentityAgent.port }}
{{- end }}
{{- with .extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* One ExternalSecret data entry: (dict "secretKey" "DATABASE_URL" "ref" $remoteKey). */}}
{{- define "datasync.externalSecretData" -}}
- secretKey: {{ .secretKey }}
  remoteRef:
    key: {{ .ref.key | quote }}
    {{- with .ref.property }}
    property: {{ . | quote }}
    {{- end }}
{{- end }}

{{/* NetworkPolicy egress rule to PostgreSQL, when enabled: call with .Values.networkPolicy. */}}
{{- define "datasync.netpol.postgresEgress" -}}
{{- if .postgres.enabled }}
- ports:
    - protocol: TCP
      port: {{ .postgres.port }}
  {{- with .postgres.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
