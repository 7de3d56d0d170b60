{{/* The release's full name, at most 63 characters. */}}
{{- define "servicehub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "servicehub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "servicehub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "servicehub.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "servicehub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "servicehub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Refuse combinations the schema cannot express clearly. */}}
{{- define "servicehub.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.store.type "sqlite") -}}
{{- fail "replicaCount > 1 needs store.type=postgres: the SQLite store is a file on one volume, usable by one replica" -}}
{{- end -}}
{{- if and (eq .Values.store.type "postgres") (not .Values.store.postgres.existingSecret) -}}
{{- fail "store.type=postgres needs store.postgres.existingSecret: the name of a Secret holding the PostgreSQL URL" -}}
{{- end -}}
{{- end -}}
