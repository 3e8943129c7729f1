{{/* Names, labels and the values every template shares. */}}

{{- define "pivot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pivot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pivot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pivot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pivot
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "api"). */}}
{{- define "pivot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pivot.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pivot.componentLabels" -}}
{{ include "pivot.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pivot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "pivot.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) -}}
{{- end -}}

{{- define "pivot.sessionNamespace" -}}
{{- default .Release.Namespace .Values.sessionNamespace -}}
{{- end -}}

{{/* Every namespace the operator watches, de-duplicated, in order. */}}
{{- define "pivot.watchedNamespaces" -}}
{{- $all := prepend .Values.operator.extraNamespaces (include "pivot.sessionNamespace" .) | uniq -}}
{{- join "," $all -}}
{{- end -}}

{{- define "pivot.apiServiceAccount" -}}{{ include "pivot.fullname" . }}-api{{- end -}}
{{- define "pivot.operatorServiceAccount" -}}{{ include "pivot.fullname" . }}-operator{{- end -}}

{{- define "pivot.s3SecretName" -}}
{{- default (printf "%s-s3" (include "pivot.fullname" .)) .Values.s3.existingSecret -}}
{{- end -}}

{{- define "pivot.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "pivot.fullname" .)) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "pivot.redisHost" -}}{{ include "pivot.fullname" . }}-redis{{- end -}}

{{/* The env entry that gives a container PIVOT_REDIS_URL. */}}
{{- define "pivot.redisUrlEnv" -}}
- name: PIVOT_REDIS_URL
{{- if eq .Values.redis.mode "bundled" }}
  value: {{ printf "redis://%s:6379/0" (include "pivot.redisHost" .) | quote }}
{{- else if .Values.redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.existingSecretKey }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "pivot.fullname" . }}-redis-url
      key: redis-url
{{- end }}
{{- end -}}

{{- define "pivot.s3Env" -}}
- name: PIVOT_S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
- name: PIVOT_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: PIVOT_S3_REGION
  value: {{ .Values.s3.region | quote }}
{{- end -}}

{{- define "pivot.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "pivot.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{- define "pivot.peeringName" -}}
{{- default (printf "%s-operator" (include "pivot.fullname" .)) .Values.operator.peeringName -}}
{{- end -}}

{{/* The operator's heartbeat Lease (in the release namespace), which the API's /health reads. */}}
{{- define "pivot.operatorLeaseName" -}}{{ include "pivot.fullname" . }}-operator{{- end -}}
