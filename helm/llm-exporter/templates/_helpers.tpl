{{/*
Names and labels, in the style of the prometheus-community charts.
*/}}

{{/*
Chart name. Kubernetes names are limited to 63 characters (DNS-1123 labels), so names are cut
there, and a trailing "-" left by the cut is removed.
*/}}
{{- define "llm-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: release name + chart name, unless the release name already contains the chart
name. Cut at 63 characters for the same reason (some name fields allow no more).
*/}}
{{- define "llm-exporter.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "llm-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "llm-exporter.labels" -}}
helm.sh/chart: {{ include "llm-exporter.chart" . }}
{{ include "llm-exporter.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels. Pods of your own Deployment that carry the exporter (see
"llm-exporter.container") need these labels for the Service and the monitors to find them.
*/}}
{{- define "llm-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "llm-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Exporter image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "llm-exporter.image" -}}
{{- printf "%s:%s" .Values.exporter.image.repository (default .Chart.AppVersion .Values.exporter.image.tag) }}
{{- end }}

{{/*
Name of the Secret holding the /ingest token (push mode), empty when there is none.
*/}}
{{- define "llm-exporter.pushSecretName" -}}
{{- if .Values.push.existingSecret }}
{{- .Values.push.existingSecret }}
{{- else if .Values.push.token }}
{{- printf "%s-push" (include "llm-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The exporter's flags for the chosen mode, one per line as a YAML list.
*/}}
{{- define "llm-exporter.args" -}}
{{- $mode := .Values.mode -}}
{{- $gpu := .Values.exporter.gpu | default (ternary "auto" "off" (eq $mode "wrapper")) -}}
- --listen=0.0.0.0:{{ .Values.exporter.port }}
- --format={{ .Values.exporter.format }}
- --gpu={{ $gpu }}
- --log-level={{ .Values.exporter.logLevel }}
{{- if eq $mode "tail" }}
- --file={{ .Values.tail.logDir }}/*.log
- --file-start=beginning
- --state-dir=/var/lib/llm-exporter
- --no-passthrough
{{- else if eq $mode "push" }}
- --http-ingest
{{- if not (include "llm-exporter.pushSecretName" .) }}
{{- if not (and .Values.networkPolicy.enabled .Values.networkPolicy.metricsFrom) }}
{{- fail "mode=push needs push.token or push.existingSecret (a bearer token for /ingest), or networkPolicy.enabled with networkPolicy.metricsFrom naming who may push" }}
{{- end }}
# no token: the NetworkPolicy limits who can reach /ingest
- --http-ingest-allow-unauthenticated
{{- end }}
{{- end }}
{{- range .Values.exporter.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Environment of the exporter: the /ingest token (push mode) and exporter.env.
*/}}
{{- define "llm-exporter.env" -}}
{{- if and (eq .Values.mode "push") (include "llm-exporter.pushSecretName" .) }}
- name: LLM_EXPORTER_HTTP_INGEST_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "llm-exporter.pushSecretName" . }}
      key: {{ ternary .Values.push.existingSecretKey "token" (ne .Values.push.existingSecret "") }}
{{- end }}
{{- with .Values.exporter.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The llm-exporter sidecar container (modes tail and push). Add it to your own pod spec with
  containers:
    {{- include "llm-exporter.container" . | nindent 4 }}
where "." carries this chart's values (from a parent chart, the subchart's scope). In tail mode the
pod also needs the volumes "logs" (an emptyDir the server writes tail.logDir/*.log into) and
"state" (an emptyDir for read offsets, so an exporter restart neither loses nor double-counts).
*/}}
{{- define "llm-exporter.container" -}}
- name: llm-exporter
  image: {{ include "llm-exporter.image" . | quote }}
  imagePullPolicy: {{ .Values.exporter.image.pullPolicy }}
  args:
    {{- include "llm-exporter.args" . | nindent 4 }}
  {{- with (include "llm-exporter.env" .) }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ .Values.exporter.port }}
      protocol: TCP
  livenessProbe:
    {{- toYaml .Values.exporter.livenessProbe | nindent 4 }}
  readinessProbe:
    {{- toYaml .Values.exporter.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml .Values.exporter.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.exporter.securityContext | nindent 4 }}
  {{- if eq .Values.mode "tail" }}
  volumeMounts:
    - name: logs
      mountPath: {{ .Values.tail.logDir }}
      readOnly: true
    - name: state
      mountPath: /var/lib/llm-exporter
  {{- end }}
{{- end }}

{{/*
tail.rotateSize in bytes ("256Mi", "64Ki", "1Gi" or a plain number of bytes).
*/}}
{{- define "llm-exporter.rotateBytes" -}}
{{- $q := toString .Values.tail.rotateSize -}}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi)?$" $q) -}}
{{- fail (printf "tail.rotateSize must be a number of bytes or end in Ki, Mi or Gi, not %q" $q) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $n $q -}}
{{- $mult := get (dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824) $unit -}}
{{- mul ($n | int64) $mult -}}
{{- end }}

{{/*
The tail-mode server wrapper (bash, run as: bash -c SCRIPT LOGFILE MAXBYTES COMMAND...). tee copies
the server's stdout and stderr to the container log and to GNU split, which hands on whole lines
as they come and starts a new part before one would pass MAXBYTES; each part renames the last
LOGFILE to LOGFILE.1 (replacing the one before) and is written to a fresh LOGFILE. The log
directory so holds at most two files of at most MAXBYTES each; the exporter follows LOGFILE by
inode and finishes reading LOGFILE.1 after the rename. Needs bash and coreutils (split, mv, cat).
*/}}
{{- define "llm-exporter.teeScript" -}}
export LLM_EXPORTER_LOG="$0"; max=$1; shift
exec > >(tee >(split --line-bytes="$max" --filter='mv -f "$LLM_EXPORTER_LOG" "$LLM_EXPORTER_LOG.1" 2>/dev/null; exec cat > "$LLM_EXPORTER_LOG"')) 2>&1
exec "$@"
{{- end }}
