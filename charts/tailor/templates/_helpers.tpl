{{- define "tailor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tailor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tailor.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tailor.serviceAccountName" -}}
{{- default (include "tailor.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "tailor.labels" -}}
app.kubernetes.io/name: tailor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tailor.selectorLabels" -}}
app.kubernetes.io/name: tailor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tailor.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* What the operator does to pipelines and their children, in the namespaces it watches. */}}
{{- define "tailor.pipelineRules" -}}
- apiGroups: [tailor.dev]
  resources: [personalizationpipelines]
  verbs: [get, list, watch, patch, update]
- apiGroups: [tailor.dev]
  resources: [personalizationpipelines/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
# Pods are only listed, while a worker or scorer is unavailable: why (CrashLoopBackOff ...).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Kafka credentials named by spec.kafka.authSecretRef: read, never listed or written.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Fails clearly when a Prometheus Operator object is enabled but its CRD is missing. */}}
{{- define "tailor.needsCrd" -}}
{{- if not (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind)) -}}
{{- fail (printf "monitoring.%s.enabled needs the Prometheus Operator's %s CRD (monitoring.coreos.com/v1); with `helm template`, pass --api-versions monitoring.coreos.com/v1/%s" .value .kind .kind) -}}
{{- end -}}
{{- end -}}
