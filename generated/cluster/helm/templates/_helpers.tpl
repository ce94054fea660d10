{{/* Object name prefix: the ViLMS deployment name. */}}
{{- define "vilms.fullname" -}}
{{- .Values.fullname | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "vilms.labels" -}}
app.kubernetes.io/name: vilms
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: {{ .Values.project | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "vilms.selector" -}}
app.kubernetes.io/name: vilms
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{- define "vilms.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
