{{/*
Names. Kubernetes names are at most 63 characters where they end up in labels or DNS.
*/}}
{{- define "keygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keygate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "keygate.gateway.name" -}}{{ include "keygate.fullname" . }}-gateway{{- end -}}
{{- define "keygate.operator.name" -}}{{ include "keygate.fullname" . }}-operator{{- end -}}
{{- define "keygate.migrate.name" -}}{{ include "keygate.fullname" . }}-migrate{{- end -}}
{{- /* "true" when the gateway gets a config file (gateway-config.yaml), else empty. */}}
{{- define "keygate.gateway.configFile" -}}{{ if and .Values.gateway.extAuthz.enabled .Values.gateway.extAuthz.hostRequirements }}true{{ end }}{{- end -}}

{{- define "keygate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels. "keygate.labels" takes a dict {ctx, component}.
*/}}
{{- define "keygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keygate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "keygate.labels" -}}
{{ include "keygate.selectorLabels" . }}
helm.sh/chart: {{ include "keygate.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: keygate
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels for objects that belong to no single component (RBAC for people, the chart Secret). */}}
{{- define "keygate.commonLabels" -}}
app.kubernetes.io/name: {{ include "keygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ include "keygate.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keygate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "keygate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "keygate.gateway.serviceAccountName" -}}
{{- default (include "keygate.gateway.name" .) .Values.gateway.serviceAccount.name -}}
{{- end -}}

{{- define "keygate.operator.serviceAccountName" -}}
{{- default (include "keygate.operator.name" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "keygate.operator.leaseName" -}}
{{- default (include "keygate.operator.name" .) .Values.operator.leaseName -}}
{{- end -}}

{{/* The Secret every component reads: the user's, or the one the chart creates. */}}
{{- define "keygate.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "keygate.fullname" . }}-secrets
{{- end -}}
{{- end -}}

{{- define "keygate.gateway.url" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "keygate.gateway.name" .) .Release.Namespace .Values.clusterDomain .Values.gateway.service.port -}}
{{- end -}}

{{/* The public base URL: explicit, else the chart Ingress' host, else the in-cluster URL. */}}
{{- define "keygate.publicUrl" -}}
{{- if .Values.config.publicUrl -}}
{{- .Values.config.publicUrl -}}
{{- else if and .Values.gateway.ingress.enabled .Values.gateway.ingress.host -}}
{{- printf "https://%s" .Values.gateway.ingress.host -}}
{{- else -}}
{{- include "keygate.gateway.url" . -}}
{{- end -}}
{{- end -}}

{{/* The fewest gateway replicas there will be: what the PDB is computed from. */}}
{{- define "keygate.gateway.minReplicas" -}}
{{- if .Values.gateway.autoscaling.enabled -}}
{{- .Values.gateway.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.gateway.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
Fail early on value combinations the schema cannot express.
*/}}
{{- define "keygate.validate" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range $key := list "databaseUrl" "gatewayDatabaseUrl" "operatorDatabaseUrl" "redisUrl" "masterKeys" -}}
{{- if not (index $.Values.secrets $key) -}}
{{- fail (printf "secrets.%s is required when secrets.existingSecret is empty (or set secrets.existingSecret to a Secret you manage; see docs/install.md)" $key) -}}
{{- end -}}
{{- end -}}
{{- if and $.Values.config.smtp.enabled (not $.Values.secrets.smtpUrl) -}}
{{- fail "secrets.smtpUrl is required when config.smtp.enabled and secrets.existingSecret is empty" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.config.smtp.enabled (not .Values.config.smtp.from) -}}
{{- fail "config.smtp.from is required when config.smtp.enabled" -}}
{{- end -}}
{{- if .Values.gateway.autoscaling.enabled -}}
{{- if gt (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas) -}}
{{- fail "gateway.autoscaling.minReplicas must not exceed gateway.autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gateway.pdb.enabled (not (kindIs "invalid" .Values.gateway.pdb.minAvailable)) -}}
{{- if ge (int .Values.gateway.pdb.minAvailable) (int (include "keygate.gateway.minReplicas" .)) -}}
{{- fail (printf "gateway.pdb.minAvailable (%v) must be lower than the gateway's minimum replica count (%s), or node drains would block" .Values.gateway.pdb.minAvailable (include "keygate.gateway.minReplicas" .)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gateway.ingress.enabled (not .Values.gateway.ingress.host) -}}
{{- fail "gateway.ingress.host is required when gateway.ingress.enabled" -}}
{{- end -}}
{{- end -}}

{{/*
The container security context every keygate container runs with. Not configurable on purpose.
*/}}
{{- define "keygate.containerSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurity.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurity.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "keygate.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurity.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurity.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurity.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The secrets volume, projecting only the keys a component needs.
Takes a dict {ctx, keys}.
*/}}
{{- define "keygate.secretsVolume" -}}
- name: secrets
  secret:
    secretName: {{ include "keygate.secretName" .ctx }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end -}}

{{- define "keygate.secretsMountPath" -}}/etc/keygate/secrets{{- end -}}

{{/* Environment common to the gateway and the operator. */}}
{{- define "keygate.commonEnv" -}}
- name: KEYGATE_PUBLIC_URL
  value: {{ include "keygate.publicUrl" . | quote }}
- name: KEYGATE_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: KEYGATE_LOG
  value: {{ .Values.config.logLevel | quote }}
- name: KEYGATE_REDIS_URL_FILE
  value: {{ include "keygate.secretsMountPath" . }}/redis-url
- name: KEYGATE_MASTER_KEYS_FILE
  value: {{ include "keygate.secretsMountPath" . }}/master-keys
{{- end -}}

{{/*
Pod annotations: the user's, plus a checksum of the chart-created Secret so pods roll when it
changes. Takes a dict {ctx, extra}; renders nothing when there is nothing to say.
*/}}
{{- define "keygate.podAnnotations" -}}
{{- $a := dict -}}
{{- if not .ctx.Values.secrets.existingSecret -}}
{{- $_ := set $a "checksum/secrets" (include (print .ctx.Template.BasePath "/secret.yaml") .ctx | sha256sum) -}}
{{- end -}}
{{- range $k, $v := .extra -}}
{{- $_ := set $a $k $v -}}
{{- end -}}
{{- if $a -}}
{{- toYaml $a -}}
{{- end -}}
{{- end -}}

{{/*
What the operator may do in the namespaces it watches. Cluster-wide (ClusterRole) by
default; with operator.watchNamespaces, a Role in each of those namespaces only.
*/}}
{{- define "keygate.operator.rules" -}}
# The five keygate kinds: watch them, add and remove the keygate.dev/cleanup finalizer.
- apiGroups: ["keygate.dev"]
  resources: ["tenants", "identityproviders", "roles", "apikeys", "oauthclients"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["keygate.dev"]
  resources: ["tenants/status", "identityproviders/status", "roles/status", "apikeys/status", "oauthclients/status"]
  verbs: ["get", "patch", "update"]
# Setting ownerReferences with blockOwnerDeletion on the Secrets it writes for ApiKeys and
# OAuthClients.
- apiGroups: ["keygate.dev"]
  resources: ["tenants/finalizers", "identityproviders/finalizers", "roles/finalizers", "apikeys/finalizers", "oauthclients/finalizers"]
  verbs: ["update"]
# Reads Secrets IdentityProviders reference; writes the Secrets holding ApiKey values and
# OAuthClient secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
Seconds the gateway lets requests in flight finish after SIGTERM: the grace period less the
preStop sleep (Kubernetes counts both against terminationGracePeriodSeconds) less 5 s for the
process to exit. Refuses a grace period too short to leave at least 1 s.
*/}}
{{- define "keygate.gateway.shutdownDrainSeconds" -}}
{{- $grace := int .Values.gateway.terminationGracePeriodSeconds -}}
{{- $preStop := int .Values.gateway.preStopSleepSeconds -}}
{{- $drain := sub (sub $grace $preStop) 5 -}}
{{- if lt $drain 1 -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must exceed gateway.preStopSleepSeconds (%d) by at least 6 s, or requests in flight are killed at shutdown" $grace $preStop) -}}
{{- end -}}
{{- $drain -}}
{{- end -}}
