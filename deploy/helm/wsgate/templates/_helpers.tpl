{{/* SPDX-License-Identifier: MIT */}}
{{/* Names, labels and the pieces every wsgate pod shares. */}}
{{- define "wsgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wsgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels: dict "root" $ "component" "edge" "group" "default" */}}
{{- define "wsgate.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .group }}
wsgate.io/group: {{ .group }}
{{- end }}
{{- end -}}

{{/* the selector's own labels, beside wsgate.labels in metadata.labels */}}
{{- define "wsgate.component" -}}
app.kubernetes.io/component: {{ .component }}
{{- if .group }}
wsgate.io/group: {{ .group }}
{{- end }}
{{- end -}}

{{- define "wsgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "wsgate.secretName" -}}
{{- if .Values.secrets.create -}}{{ include "wsgate.fullname" . }}-secrets{{- else -}}{{ required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret }}{{- end -}}
{{- end -}}

{{/* The routes of a group: dict "root" $ "names" (list; empty: all) */}}
{{- define "wsgate.groupRoutes" -}}
{{- $out := list -}}
{{- range .root.Values.routes -}}
{{- if or (not $.names) (has .name $.names) -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* wsgate's config file: dict "root" $ "routes" (list) "edge" (edge group or nil) */}}
{{- define "wsgate.config" -}}
{{- $root := .root -}}
{{- $cfg := deepCopy $root.Values.config -}}
{{- $host := $root.Values.listenHost -}}
{{- $edge := merge (dict "listen" (printf "%s:%v" $host $root.Values.ports.edge) "shutdown_grace" (printf "%vs" $root.Values.edge.shutdownGraceSeconds) "heartbeat_interval" $root.Values.edge.heartbeatInterval) (default dict $cfg.edge) -}}
{{- if .edge }}{{- $_ := set $edge "max_connections" .edge.maxConnections -}}{{- end -}}
{{- with $root.Values.edge.trustedProxies }}{{- $_ := set $edge "trusted_proxies" . -}}{{- end -}}
{{- $_ := set $cfg "edge" $edge -}}
{{- $api := deepCopy (default dict $cfg.api) -}}
{{- $_ := set $api "listen" (printf "%s:%v" $host $root.Values.ports.api) -}}
{{- $_ := set $cfg "api" $api -}}
{{- $_ := set $cfg "ops" (dict "listen" (printf "%s:%v" $host $root.Values.ports.ops)) -}}
{{- $routes := list -}}
{{- range .routes -}}
{{- $routes = append $routes (omit . "name" "webhookSecret" "clientJwtSecret") -}}
{{- end -}}
{{- $_ := set $cfg "routes" $routes -}}
# rendered by the wsgate chart; store, nats and secrets come from
# WSGATE_*_FILE (the Secret mounted at /etc/wsgate/secrets)
{{ toYaml $cfg }}
{{- end -}}

{{/* env of a wsgate container: dict "root" $ "routes" (list) */}}
{{- define "wsgate.env" -}}
- name: WSGATE_CONFIG
  value: /etc/wsgate/config/wsgate.yaml
- name: WSGATE_STORE_FILE
  value: /etc/wsgate/secrets/store-dsn
- name: WSGATE_NATS_FILE
  value: /etc/wsgate/secrets/nats-url
- name: WSGATE_API_AUTH_JWT_SECRET_FILE
  value: /etc/wsgate/secrets/api-jwt-secret
{{- range $i, $r := .routes }}
- name: WSGATE_ROUTES_{{ $i }}_WEBHOOK_SECRET_FILE
  value: /etc/wsgate/secrets/webhook-secret-{{ $r.name }}
{{- if $r.clientJwtSecret }}
- name: WSGATE_ROUTES_{{ $i }}_AUTH_JWT_SECRET_FILE
  value: /etc/wsgate/secrets/client-jwt-secret-{{ $r.name }}
{{- end }}
{{- end }}
{{- end -}}

{{/* volumes of a wsgate pod: dict "root" $ "config" (ConfigMap name) */}}
{{- define "wsgate.volumes" -}}
- name: config
  configMap:
    name: {{ .config }}
- name: secrets
  secret:
    secretName: {{ include "wsgate.secretName" .root }}
    defaultMode: 0440
    optional: false
- name: data
  emptyDir: {}
{{- range .root.Values.tlsSecrets }}
- name: tls-{{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    optional: false
{{- end }}
{{- end -}}

{{- define "wsgate.volumeMounts" -}}
- name: config
  mountPath: /etc/wsgate/config
  readOnly: true
- name: secrets
  mountPath: /etc/wsgate/secrets
  readOnly: true
- name: data
  mountPath: /var/lib/wsgate
{{- range .Values.tlsSecrets }}
- name: tls-{{ .name }}
  mountPath: /etc/wsgate/tls/{{ .name }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* pod-level settings shared by every wsgate pod */}}
{{- define "wsgate.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
enableServiceLinks: {{ .Values.enableServiceLinks }}
{{- if .Values.hostNetwork }}
hostNetwork: true
{{- end }}
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
{{- end -}}

{{- define "wsgate.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "wsgate.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 1
{{- end -}}

{{/* checksum that rolls pods when their config or the chart-made Secret changes */}}
{{- define "wsgate.checksums" -}}
checksum/config: {{ .config | sha256sum }}
{{- if .root.Values.secrets.create }}
checksum/secrets: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- end }}
{{- end -}}

{{/* The bundled PostgreSQL's password: the value, else the one the release's
     Secret already holds, else random; generated once per render (kept in
     .Values so that every template sees the same one). */}}
{{- define "wsgate.pgPassword" -}}
{{- if not .Values.postgresql.bundled -}}
{{- else if .Values.postgresql.password -}}{{ .Values.postgresql.password }}
{{- else -}}
{{- if not (hasKey .Values.postgresql "_rendered") -}}
{{- $pw := randAlphaNum 32 -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (printf "%s-secrets" (include "wsgate.fullname" .)) -}}
{{- if and $old $old.data (hasKey $old.data "postgres-password") -}}
{{- $pw = index $old.data "postgres-password" | b64dec -}}
{{- end -}}
{{- $_ := set .Values.postgresql "_rendered" $pw -}}
{{- end -}}
{{- index .Values.postgresql "_rendered" -}}
{{- end -}}
{{- end -}}
