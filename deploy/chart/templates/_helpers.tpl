{{/* Names, labels and the controller's flags, shared by the templates. */}}

{{/* The name of every object: the one kubeseal expects unless overridden. */}}
{{- define "sealant.fullname" -}}
{{- default "sealed-secrets-controller" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The stem of the Roles' names: `sealed-secrets` for the default fullname, as deploy/ has. */}}
{{- define "sealant.stem" -}}
{{- include "sealant.fullname" . | trimSuffix "-controller" -}}
{{- end -}}

{{- define "sealant.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{- define "sealant.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sealant.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object: deploy/'s, Helm's, then commonLabels. */}}
{{- define "sealant.labels" -}}
app.kubernetes.io/name: {{ default "sealant" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Pods' selector: the one deploy/ uses, so either install can replace the other. */}}
{{- define "sealant.selector" -}}
name: {{ include "sealant.fullname" . }}
{{- end -}}

{{/*
`metadata.annotations` from the object's own (a dict or nil) and commonAnnotations, on lines of
their own; nothing when both are empty. Included without indenting, under `metadata:`.
*/}}
{{- define "sealant.annotations" -}}
{{- $all := merge (dict) (default (dict) .own) (default (dict) .context.Values.commonAnnotations) -}}
{{- with $all }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "sealant.image" -}}
{{- $repo := printf "%s/%s" .Values.image.registry .Values.image.repository | trimPrefix "/" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}
{{- end -}}

{{/* `k=v,k2=v2` from a map of strings (key Secrets' annotations and labels). */}}
{{- define "sealant.pairs" -}}
{{- $pairs := list -}}
{{- range $k, $v := .map -}}
{{- if not (kindIs "string" $v) -}}
{{- fail (printf "%s: the value of %s must be a string" $.what $k) -}}
{{- end -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* A value as text, nil as "" (0 stays "0"). */}}
{{- define "sealant.str" -}}
{{- if not (kindIs "invalid" .) }}{{ toString . }}{{ end -}}
{{- end -}}

{{/*
The controller's flags: only those whose value differs from the controller's default, so the
defaults give deploy/'s Deployment (no arguments).
*/}}
{{- define "sealant.args" -}}
{{- $v := .Values -}}
{{- $args := list -}}
{{- if not $v.updateStatus }}{{ $args = append $args "--update-status=false" }}{{ end -}}
{{- if $v.skipRecreate }}{{ $args = append $args "--skip-recreate=true" }}{{ end -}}
{{- with include "sealant.str" $v.keyrenewperiod }}{{ $args = append $args (printf "--key-renew-period=%s" .) }}{{ end -}}
{{- with $v.keyttl }}{{ $args = append $args (printf "--key-ttl=%s" .) }}{{ end -}}
{{- with $v.keycutofftime }}{{ $args = append $args (printf "--key-cutoff-time=%s" .) }}{{ end -}}
{{- with include "sealant.str" $v.rateLimit }}{{ $args = append $args (printf "--rate-limit=%s" .) }}{{ end -}}
{{- with include "sealant.str" $v.rateLimitBurst }}{{ $args = append $args (printf "--rate-limit-burst=%s" .) }}{{ end -}}
{{- if ne $v.secretName "sealed-secrets-key" }}{{ $args = append $args (printf "--key-prefix=%s" $v.secretName) }}{{ end -}}
{{- if not $v.allNamespaces }}{{ $args = append $args "--all-namespaces=false" }}{{ end -}}
{{- with $v.additionalNamespaces }}{{ $args = append $args (printf "--additional-namespaces=%s" (join "," .)) }}{{ end -}}
{{- with $v.privateKeyAnnotations }}{{ $args = append $args (printf "--privatekey-annotations=%s" (include "sealant.pairs" (dict "map" . "what" "privateKeyAnnotations"))) }}{{ end -}}
{{- with $v.privateKeyLabels }}{{ $args = append $args (printf "--privatekey-labels=%s" (include "sealant.pairs" (dict "map" . "what" "privateKeyLabels"))) }}{{ end -}}
{{- with $v.backupRecipients }}{{ $args = append $args (printf "--backup-age-recipients=%s" (join "," .)) }}{{ end -}}
{{- with $v.trustedProxies }}{{ $args = append $args (printf "--trusted-proxies=%s" (join "," .)) }}{{ end -}}
{{- if $v.logInfoStdout }}{{ $args = append $args "--log-info-stdout=true" }}{{ end -}}
{{- with $v.logLevel }}{{ $args = append $args (printf "--log-level=%s" .) }}{{ end -}}
{{- with $v.logFormat }}{{ $args = append $args (printf "--log-format=%s" .) }}{{ end -}}
{{- with include "sealant.str" $v.maxRetries }}{{ $args = append $args (printf "--max-unseal-retries=%s" .) }}{{ end -}}
{{- with include "sealant.str" $v.kubeClientQPS }}{{ $args = append $args (printf "--kubeclient-qps=%s" .) }}{{ end -}}
{{- with include "sealant.str" $v.kubeClientBurst }}{{ $args = append $args (printf "--kubeclient-burst=%s" .) }}{{ end -}}
{{- if $v.watchForSecrets }}{{ $args = append $args "--watch-for-secrets=true" }}{{ end -}}
{{- if ne (int $v.containerPorts.http) 8080 }}{{ $args = append $args (printf "--listen-addr=:%d" (int $v.containerPorts.http)) }}{{ end -}}
{{- if not $v.metrics.enabled }}
{{- $args = append $args (printf "--listen-metrics-addr=127.0.0.1:%d" (int $v.containerPorts.metrics)) -}}
{{- else if ne (int $v.containerPorts.metrics) 8081 }}
{{- $args = append $args (printf "--listen-metrics-addr=:%d" (int $v.containerPorts.metrics)) -}}
{{- end -}}
{{- $fullname := include "sealant.fullname" . -}}
{{- if ne $fullname "sealed-secrets-controller" }}{{ $args = append $args (printf "--leader-elect-lease-name=%s" $fullname) }}{{ end -}}
{{- range $v.extraArgs }}{{ $args = append $args . }}{{ end -}}
{{- toJson $args -}}
{{- end -}}

{{/* A probe from its values (`enabled` left out), on `path` through the http port. */}}
{{- define "sealant.probe" -}}
httpGet:
  path: {{ .path }}
  port: http
{{- toYaml (omit .probe "enabled") | nindent 0 }}
{{- end -}}
