{{/*
The chart is the one source of an installation's objects: kubectl imagecache
install renders it too (pkg/install), with the values of its flags.
Object names are fixed, not derived from the release name: the daemon, the
planner and the plugin find each other by them. Cluster-scoped objects carry
the release namespace in their names, so two installations never share one.
*/}}

{{/* icd.name is the name of the node daemon's objects. */}}
{{- define "icd.name" -}}image-cache-daemon{{- end -}}

{{/* icd.planner is the name of the planner's objects. */}}
{{- define "icd.planner" -}}image-cache-daemon-planner{{- end -}}

{{- /* The ConfigMaps that hold the parts of a wanted set too large for one
(pkg/wanted: PartName(1) to PartName(MaxParts)), as a YAML flow list. */}}
{{- define "icd.wantedParts" -}}
[{{ range $i, $_ := until 15 }}{{ if $i }}, {{ end }}image-cache-daemon-wanted-{{ add1 $i }}{{ end }}]
{{- end -}}

{{/*
icd.podLabels (component): the labels of the daemon's and the planner's pods.
They select the pods, so they never change.
*/}}
{{- define "icd.podLabels" -}}
app.kubernetes.io/component: {{ . }}
app.kubernetes.io/name: image-cache-daemon
app.kubernetes.io/part-of: image-cache-daemon
{{- end -}}

{{/*
icd.labels (dict root component): the labels of an installation's objects:
the pods' labels and the installation's instance, its namespace, by which
uninstall finds the Roles it keeps in source namespaces.
*/}}
{{- define "icd.labels" -}}
{{ include "icd.podLabels" .component }}
app.kubernetes.io/instance: {{ .root.Release.Namespace | quote }}
{{- end -}}

{{/* icd.rbacName: the installation's ClusterRole(Binding) and source Roles. */}}
{{- define "icd.rbacName" -}}image-cache-daemon:{{ .Release.Namespace }}{{- end -}}

{{/* icd.daemonUser: the user name of the node daemon's service account. */}}
{{- define "icd.daemonUser" -}}system:serviceaccount:{{ .Release.Namespace }}:image-cache-daemon{{- end -}}

{{/*
icd.sourceNamespaces: the namespaces the namespaced sources read, as a JSON
list; empty for all of them. The release namespace is always among them when
they are limited: it holds the image list that kubectl imagecache add edits.
*/}}
{{- define "icd.sourceNamespaces" -}}
{{- if .Values.sources.namespaces -}}
{{- prepend .Values.sources.namespaces .Release.Namespace | uniq | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/*
icd.readRules (dict sources namespaced cluster): get, list and watch (an
informer lists and watches; a source reads an object again with get when its
namespace's share of --max-images has room for what it cut) on the sources
that are read, the namespaced ones if namespaced, the cluster-scoped ones if
cluster: one rule per API group.
*/}}
{{- define "icd.readRules" -}}
{{- $s := .sources -}}
{{- if and $s.configMaps .namespaced }}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
{{- end }}
{{- $argo := list -}}
{{- if and $s.argoWorkflowTemplates .namespaced }}{{ $argo = append $argo "workflowtemplates" }}{{ end -}}
{{- if and $s.argoClusterWorkflowTemplates .cluster }}{{ $argo = append $argo "clusterworkflowtemplates" }}{{ end -}}
{{- if and $s.argoCronWorkflows .namespaced }}{{ $argo = append $argo "cronworkflows" }}{{ end -}}
{{- if $argo }}
- apiGroups: [argoproj.io]
  resources: {{ toJson $argo }}
  verbs: [get, list, watch]
{{- end }}
{{- end -}}

{{/* icd.image: the daemon image's reference. */}}
{{- define "icd.image" -}}
{{- $i := .Values.image -}}
{{- $tag := $i.tag | default (ternary "" .Chart.AppVersion (ne $i.digest "")) -}}
{{ $i.repository }}{{ if $tag }}:{{ $tag }}{{ end }}{{ if $i.digest }}@{{ $i.digest }}{{ end }}
{{- end -}}

{{/*
icd.args: the flags the node daemon and the planner share. The downward API
fills the first three (icd.podSpec's env).
*/}}
{{- define "icd.args" -}}
- --node-name=$(NODE_NAME)
- --pod-name=$(POD_NAME)
- --pod-namespace=$(POD_NAMESPACE)
- {{ printf "--resync-period=%v" .Values.resyncPeriod | toJson }}
- --watch-configmaps={{ .Values.sources.configMaps }}
- --watch-argo-workflow-templates={{ .Values.sources.argoWorkflowTemplates }}
- --watch-argo-cluster-workflow-templates={{ .Values.sources.argoClusterWorkflowTemplates }}
- --watch-argo-cron-workflows={{ .Values.sources.argoCronWorkflows }}
- {{ printf "--registry-pull-qps=%v" .Values.registryPullQPS | toJson }}
{{- if gt (float64 .Values.registryPullQPS) 0.0 }}
- {{ printf "--registry-burst=%v" .Values.registryBurst | toJson }}
{{- end }}
{{- with .Values.priorityClassName }}
- {{ printf "--prefetch-priority-class=%s" . | toJson }}
{{- end }}
{{- range include "icd.sourceNamespaces" . | fromJsonArray }}
- {{ printf "--source-namespace=%s" . | toJson }}
{{- end }}
{{- with .Values.startupTaint.key }}
- {{ printf "--startup-taint=%s" . | toJson }}
- {{ printf "--warm-timeout=%v" $.Values.startupTaint.warmTimeout | toJson }}
{{- end }}
{{- range .Values.images }}
- {{ printf "--image=%s" . | toJson }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ toJson . }}
{{- end }}
{{- end -}}

{{/*
icd.podSpec (dict root serviceAccount container args): the pod of the node
daemon and of the planner: one container of the daemon's image, run as
serviceAccount with args (a JSON list), meeting the restricted profile.
*/}}
{{- define "icd.podSpec" -}}
{{- $v := .root.Values -}}
serviceAccountName: {{ .serviceAccount }}
{{- with $v.tolerations }}
tolerations: {{ toJson . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector: {{ toJson . }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ toJson . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ toJson . }}
{{- end }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
terminationGracePeriodSeconds: 10
containers:
- name: {{ .container }}
  image: {{ include "icd.image" .root | toJson }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  command: [/image-cache-daemon]
  args: {{ toJson .args }}
  env:
  # A soft heap limit: without it the Go runtime lets the RSS grow to twice
  # the live heap between collections.
  - {name: GOMEMLIMIT, value: 40MiB}
  - name: NODE_NAME
    valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}
  - name: POD_NAME
    valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.name}}
  - name: POD_NAMESPACE
    valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}
  ports:
  - {name: metrics, containerPort: 8080, protocol: TCP}
  - {name: health, containerPort: 8081, protocol: TCP}
  livenessProbe:
    httpGet: {path: /healthz, port: health}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /readyz, port: health}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  {{- with $v.resources }}
  resources: {{ toJson . }}
  {{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
{{- end -}}

{{/*
icd.kept (dict obj old fields): a CEL expression: each of fields, read from
the object and the old object through the accessors obj and old, is as it
was (or still absent).
*/}}
{{- define "icd.kept" -}}
{{- $parts := list -}}
{{- range .fields }}{{ $parts = append $parts (printf "%s.?%s == %s.?%s" $.obj . $.old .) }}{{ end -}}
{{- join " && " $parts -}}
{{- end -}}

{{/*
icd.tokenNode: the node the request's token names, as a list of at most one
name. A token that is not pod-bound (an impersonated service account, a
long-lived Secret token) has no extra at all: has() tells, where reading the
missing key would fail the variable instead of saying why it is refused.
*/}}
{{- define "icd.tokenNode" -}}
- name: tokenNode
  expression: {{ `has(request.userInfo.extra) && "authentication.kubernetes.io/node-name" in request.userInfo.extra ? request.userInfo.extra["authentication.kubernetes.io/node-name"] : []` | toJson }}
{{- end -}}

{{/*
icd.tokenNamesANode (dict root what): the first validation of each policy: a
request of the daemon's service account must carry a pod-bound token, which
names the node, so that the policy can tell the daemon's own node.
*/}}
{{- define "icd.tokenNamesANode" -}}
- expression: variables.tokenNode.size() == 1
  message: {{ printf "only a pod-bound service-account token of a node's daemon may write %s as %s: this request's token names no node (authentication.kubernetes.io/node-name), as an impersonated service account or a long-lived token never does" .what (include "icd.daemonUser" .root) | toJson }}
  reason: Forbidden
{{- end -}}
