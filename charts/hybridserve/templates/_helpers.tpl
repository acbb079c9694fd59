{{/* Name of the chart, overridable. */}}
{{- define "hybridserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "hybridserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hybridserve.operatorName" -}}
{{- printf "%s-operator" (include "hybridserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hybridserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hybridserve.labels" -}}
helm.sh/chart: {{ include "hybridserve.chart" . }}
{{ include "hybridserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hybridserve
{{- end }}

{{/*
The operator's own labels. The name is <chart>-operator so that a Service the operator creates
for a HybridServeDeployment (selector app.kubernetes.io/name=hybridserve + instance=<hsd>) can never
select the operator pod, even when the release and the HSD share a name and namespace.
*/}}
{{- define "hybridserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hybridserve.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "hybridserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hybridserve.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the appVersion. */}}
{{- define "hybridserve.operatorImage" -}}
{{- $img := .Values.operator.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* Operator rules inside a served namespace (operator/rbac.ts namespacedRules). */}}
{{- define "hybridserve.namespacedRules" -}}
- apiGroups: ["hybridserve.io"]
  resources: ["hybridservedeployments"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["hybridserve.io"]
  resources: ["hybridservedeployments/status"]
  verbs: ["get", "update", "patch"]
# blockOwnerDeletion on the children's ownerReferences needs update on finalizers.
- apiGroups: ["hybridserve.io"]
  resources: ["hybridservedeployments/finalizers"]
  verbs: ["update"]
# Children are written by server-side apply (patch; create for the first apply); stale node groups deleted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Optional children (spec.podDisruptionBudget, spec.networkPolicy).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch", "delete"]
# spec.parallelism.nodes > 1: one LeaderWorkerSet per node group (server-side apply, readiness, informer, stale groups).
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The feedback loop finds ready pods and scrapes their stats by pod IP.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped reads (operator/rbac.ts nodeRules): node groups need GPU labels and allocatable memory. */}}
{{- define "hybridserve.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* The gateway's labels: component gateway, so neither the operator's nor an HSD's selector matches it. */}}
{{- define "hybridserve.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "hybridserve.name" . }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "hybridserve.gatewayLabels" -}}
helm.sh/chart: {{ include "hybridserve.chart" . }}
{{ include "hybridserve.gatewaySelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hybridserve
{{- end }}
