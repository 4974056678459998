{{/*
Names and labels shared by every template of the chart.
*/}}

{{/* The chart's short name: `nameOverride` or the chart name. */}}
{{- define "kubeledger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: `fullnameOverride`, or the release name (with the chart
name appended unless the release name already contains it). Truncated to 63 characters
because some names end up in DNS labels and label values.
*/}}
{{- define "kubeledger.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "kubeledger.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "kubeledger.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods; they must never change across upgrades. */}}
{{- define "kubeledger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeledger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object the chart creates. */}}
{{- define "kubeledger.labels" -}}
{{ include "kubeledger.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Marks what protects the audit trail (the records' admission policy and binding, the
operator's own RBAC): the operator records every change to a labelled object, and a
critical one when it weakens the guard or removes this label.
*/}}
{{- define "kubeledger.protectionLabel" -}}
kubeledger.io/protection: "true"
{{- end }}

{{/* The ServiceAccount the operator runs as, created by the chart or not. */}}
{{- define "kubeledger.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubeledger.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook's Service; its DNS name is what the serving certificate is issued for. */}}
{{- define "kubeledger.webhookServiceName" -}}
{{- printf "%s-webhook" (include "kubeledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the serving tls.crt, tls.key and ca.crt (the user's, Helm's or cert-manager's). */}}
{{- define "kubeledger.webhookSecretName" -}}
{{- if .Values.webhook.tls.existingSecret }}
{{- .Values.webhook.tls.existingSecret }}
{{- else }}
{{- printf "%s-webhook-tls" (include "kubeledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Non-empty when the pods serve HTTPS to the apiserver: the webhook, the audit receiver or both. */}}
{{- define "kubeledger.serving" -}}
{{- if or .Values.webhook.enabled .Values.audit.enabled }}true{{ end }}
{{- end }}

{{/* The cert-manager Certificate that issues the webhook Secret. */}}
{{- define "kubeledger.webhookCertificateName" -}}
{{- printf "%s-webhook" (include "kubeledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Lease the replicas elect their one writer on (in the release namespace): its
holderIdentity is the writing pod's name.
*/}}
{{- define "kubeledger.leaseName" -}}
{{- include "kubeledger.fullname" . }}
{{- end }}

{{/* The Service Prometheus scrapes every replica's /metrics through. */}}
{{- define "kubeledger.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kubeledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Non-empty when more than one replica runs: the PodDisruptionBudget and the default anti-affinity. */}}
{{- define "kubeledger.replicated" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* The Secret holding the redaction salt. */}}
{{- define "kubeledger.saltSecretName" -}}
{{- printf "%s-redaction-salt" (include "kubeledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
