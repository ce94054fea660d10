{{/* Pieces every vLLM pod shares (Deployment pods, LeaderWorkerSet leaders and workers): (dict "root" $ "m" <model>). */}}
{{- define "vilms.vllm.name" -}}
{{- printf "%s-vllm-%s" (include "vilms.fullname" .root) .m.name -}}
{{- end -}}

{{- define "vilms.vllm.env" -}}
{{- $c := .root.Values.vllm.container -}}
- name: HF_HOME
  value: {{ $c.cacheDir | quote }}
{{- if .m.runtimeLora }}
- name: VLLM_ALLOW_RUNTIME_LORA_UPDATING
  value: "True"
{{- end }}
{{- range .m.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end -}}

{{- define "vilms.vllm.mounts" -}}
{{- $c := .root.Values.vllm.container -}}
- name: config
  mountPath: {{ $c.configDir }}
  readOnly: true
- name: model-cache
  mountPath: {{ $c.cacheDir }}
- name: artifacts
  mountPath: {{ $c.artifactsDir }}
  readOnly: true
  {{- with .root.Values.artifacts.subPath }}
  subPath: {{ . | quote }}
  {{- end }}
- name: shm
  mountPath: /dev/shm
{{- end -}}

{{- define "vilms.vllm.volumes" -}}
- name: config
  configMap:
    name: {{ include "vilms.vllm.name" . }}
- name: model-cache
  {{- if .root.Values.modelCache.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .root.Values.modelCache.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .root.Values.modelCache.size }}
  {{- end }}
- name: artifacts
  {{- if .root.Values.artifacts.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .root.Values.artifacts.existingClaim }}
    readOnly: true
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .m.shmSize }}
{{- end -}}

{{/* Scheduling of a GPU pod: the GPU product and the GPU taint. */}}
{{- define "vilms.vllm.scheduling" -}}
{{- with .m.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
tolerations:
  - key: nvidia.com/gpu
    operator: Exists
    effect: NoSchedule
{{- end -}}

{{/* The API server's probes and graceful stop: the engine is ready once its health path answers, and keeps
serving preStopSeconds after its deletion so every gateway has re-resolved the headless Service. */}}
{{- define "vilms.vllm.serving" -}}
{{- $c := .root.Values.vllm.container -}}
ports:
  - name: http
    containerPort: {{ $c.port }}
    protocol: TCP
startupProbe:
  httpGet:
    path: {{ $c.healthPath }}
    port: http
  periodSeconds: {{ .m.startupProbe.periodSeconds }}
  failureThreshold: {{ .m.startupProbe.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ $c.healthPath }}
    port: http
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: {{ $c.healthPath }}
    port: http
  periodSeconds: 15
  failureThreshold: 4
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ .root.Values.vllm.preStopSeconds | quote }}]
{{- end -}}
