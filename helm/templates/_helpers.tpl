{{/* Common labels of every object. */}}
{{- define "aegis.labels" -}}
app.kubernetes.io/part-of: aegis
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image reference: repository and tag (default: the chart's appVersion). */}}
{{- define "aegis.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* OBJECT_STORE_URL: objectStore.url, else scheme://bucket/prefix (bucket is required). */}}
{{- define "aegis.objectStoreUrl" -}}
{{- if .Values.objectStore.url -}}
{{ .Values.objectStore.url }}
{{- else -}}
{{ .Values.objectStore.scheme }}://{{ required "objectStore.bucket is required (Terraform output bucket_name) unless objectStore.url is set" .Values.objectStore.bucket }}/{{ .Values.objectStore.prefix }}
{{- end -}}
{{- end -}}

{{/* TRUSTED_PROXIES: backend.trustedProxies as one comma-separated string, empty entries
dropped; a list or a string. Empty: the variable is not set at all. */}}
{{- define "aegis.trustedProxies" -}}
{{- $proxies := .Values.backend.trustedProxies | default list -}}
{{- if kindIs "slice" $proxies -}}
{{ join "," (compact $proxies) }}
{{- else -}}
{{ $proxies | toString | trim }}
{{- end -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL and its key. */}}
{{- define "aegis.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{ .Values.database.existingSecret }}
{{- else -}}
{{- $_ := required "database.url is required (Terraform output database_url) unless database.existingSecret is set" .Values.database.url -}}
aegis-database
{{- end -}}
{{- end -}}

{{- define "aegis.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{ .Values.database.existingSecretKey }}
{{- else -}}
DATABASE_URL
{{- end -}}
{{- end -}}

{{/* env entry reading DATABASE_URL from its Secret. */}}
{{- define "aegis.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "aegis.databaseSecretName" . }}
      key: {{ include "aegis.databaseSecretKey" . }}
{{- end -}}

{{/* env entries from a Secret: call with (dict "secret" NAME "required" LIST "optional" LIST). */}}
{{- define "aegis.secretEnv" -}}
{{- $secret := .secret -}}
{{- range .required }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- range .optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end -}}

{{/* The container security context every Aegis container runs with. */}}
{{- define "aegis.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Pod annotations that let a plain Prometheus (kubernetes_sd_configs) find /metrics. */}}
{{- define "aegis.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/* Egress rules to where workload identity gets its credentials
(networkPolicy.workloadIdentityEgress), for the backend and the AI engine. */}}
{{- define "aegis.workloadIdentityEgress" -}}
{{- range .Values.networkPolicy.workloadIdentityEgress }}
- to:
    - ipBlock: {cidr: {{ .cidr | quote }}}
  ports:
    - {protocol: TCP, port: {{ .port }}}
{{- end }}
{{- end -}}

{{/* The namespaces that get the executor's Role and RoleBinding, as a JSON list:
executor.roleNamespaces, else executor.allowedNamespaces. A Role lives in one named namespace,
so a glob of allowedNamespaces (team-*) needs roleNamespaces; every one of those must be a
namespace name matching an allowed pattern (as the executor's fnmatch does), and every allowed
entry that is a plain name must be among them. Anything else stops the render. */}}
{{- define "aegis.executorRoleNamespaces" -}}
{{- $allowed := .Values.executor.allowedNamespaces | default list -}}
{{- $roles := .Values.executor.roleNamespaces | default list -}}
{{- $nameRe := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" -}}
{{- $patterns := list -}}
{{- range $allowed -}}
{{- $entry := toString . -}}
{{- if regexMatch "[*?\\[]" $entry -}}
{{- if not $roles -}}
{{- fail (printf "executor.allowedNamespaces: %q is a glob, and a Role needs a namespace name: list the existing namespaces it should cover in executor.roleNamespaces (one Role and RoleBinding each; never a ClusterRole)" $entry) -}}
{{- end -}}
{{- else if not (and (regexMatch $nameRe $entry) (le (len $entry) 63)) -}}
{{- fail (printf "executor.allowedNamespaces: %q is neither a namespace name (lowercase letters, digits, '-', at most 63) nor a glob" $entry) -}}
{{- else if and $roles (not (has $entry $roles)) -}}
{{- fail (printf "executor.allowedNamespaces: %q is allowed but not in executor.roleNamespaces: the executor would have no rights there" $entry) -}}
{{- end -}}
{{- $patterns = append $patterns (printf "^%s$" ($entry | replace "." "\\." | replace "*" ".*" | replace "?" "." | replace "[!" "[^")) -}}
{{- end -}}
{{- range $roles -}}
{{- $ns := toString . -}}
{{- if not (and (regexMatch $nameRe $ns) (le (len $ns) 63)) -}}
{{- fail (printf "executor.roleNamespaces: %q is not a namespace name (lowercase letters, digits, '-', at most 63)" $ns) -}}
{{- end -}}
{{- $matched := false -}}
{{- range $patterns -}}
{{- if regexMatch . $ns -}}{{- $matched = true -}}{{- end -}}
{{- end -}}
{{- if not $matched -}}
{{- fail (printf "executor.roleNamespaces: %q matches no entry of executor.allowedNamespaces: the executor would hold rights where it may not act" $ns) -}}
{{- end -}}
{{- end -}}
{{- if $roles -}}{{ toJson (uniq $roles) }}{{- else -}}{{ toJson $allowed }}{{- end -}}
{{- end -}}
