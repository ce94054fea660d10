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

{{/* Tolerations of a training pod (Job or TrainJob): the GPU taint. */}}
{{- define "vilms.training.tolerations" -}}
tolerations:
  - key: nvidia.com/gpu
    operator: Exists
    effect: NoSchedule
{{- end -}}

{{/* Name of a TrainJob: (dict "root" $ "job" <training.jobs entry>). It leaves room for the pod names JobSet
derives from it, <name>-<replicatedJob>-0-<node index>-<5 random characters>, at most 63 characters. */}}
{{- define "vilms.trainjob.name" -}}
{{- $podSuffix := printf "-%s-0-%d-xxxxx" .root.Values.training.trainJob.replicatedJob (sub (int .job.numNodes) 1) -}}
{{- $max := sub (sub 63 (len $podSuffix)) (add 1 (len .job.revision)) -}}
{{- printf "%s-train-%s" (include "vilms.fullname" .root) .job.name | trunc (int $max) | trimSuffix "-" }}-{{ .job.revision }}
{{- end -}}

{{/* Name of a training RayJob: (dict "root" $ "job" <training.jobs entry>), at most rayJob.nameMax characters
(KubeRay names the job's RayCluster <name>-<5 random>), the revision kept. */}}
{{- define "vilms.rayjob.name" -}}
{{- $max := sub (sub (int .job.rayJob.nameMax) 1) (len .job.revision) -}}
{{- printf "%s-train-%s" (include "vilms.fullname" .root) .job.name | trunc (int $max) | trimSuffix "-" }}-{{ .job.revision }}
{{- end -}}
