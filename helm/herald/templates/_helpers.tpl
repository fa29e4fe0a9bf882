{{/*
Names and labels.
*/}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald.fullname" -}}
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

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end -}}

{{/* Selector labels of one stage: (dict "root" $ "stage" "plan"). */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "herald.stageLabels" -}}
{{ include "herald.labels" .root }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/*
Deep merge of two maps that, unlike sprig's merge/mergeOverwrite, lets false, 0 and "" in the
override win (mergo treats them as "empty" and keeps the default). null in the override keeps
the default. Maps merge key by key, everything else replaces. Returns JSON.
Usage: include "herald.merge" (dict "base" $a "over" $b) | fromJson
*/}}
{{- define "herald.merge" -}}
{{- $out := dict -}}
{{- range $k, $v := (.base | default dict) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- range $k, $v := (.over | default dict) -}}
{{- $cur := get $out $k -}}
{{- if and (kindIs "map" $v) (kindIs "map" $cur) -}}
{{- $_ := set $out $k (include "herald.merge" (dict "base" $cur "over" $v) | fromJson) -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Partitions per topic name from files/topics.json, as JSON {"name": partitions}. */}}
{{- define "herald.topicPartitions" -}}
{{- $catalog := .Files.Get "files/topics.json" | fromJson -}}
{{- if not $catalog.topics -}}
{{- fail "files/topics.json is missing or has no topics: copy topics/topics.json into helm/herald/files/" -}}
{{- end -}}
{{- $out := dict -}}
{{- range $t := $catalog.topics -}}
{{- $_ := set $out $t.name (int $t.partitions) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Whether preStop uses the kubelet's sleep action (true) or exec (false). */}}
{{- define "herald.preStopNative" -}}
{{- $m := .Values.lifecycle.preStopMethod | default "auto" -}}
{{- if eq $m "sleep" -}}true
{{- else if eq $m "exec" -}}false
{{- else if eq $m "auto" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version -}}true{{- else -}}false{{- end -}}
{{- else -}}
{{- fail (printf "lifecycle.preStopMethod must be auto, sleep or exec, not %q" $m) -}}
{{- end -}}
{{- end -}}

{{/*
The effective configuration of one stage, as JSON: stageDefaults merged with stages.<name>, plus
computed fields. Validates the stage and fails with an explanation.
Usage: include "herald.stage" (dict "root" $ "name" "plan") | fromJson
Computed fields:
  name, resourceName, workloadKind (Deployment|StatefulSet), consumer (bool),
  partitionCap (total partitions of the consumed topics; 0 when not a consumer),
  autoscaler ("keda" | "hpa" | ""), kedaMax, hpaMax (capped), grace (seconds),
  preStopSeconds (0 when none), surge (false when a consumer can run at its partition cap)
*/}}
{{- define "herald.stage" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $raw := get $root.Values.stages $name -}}
{{- if not (kindIs "map" $raw) -}}
{{- fail (printf "stages.%s must be a map of settings" $name) -}}
{{- end -}}
{{- $s := include "herald.merge" (dict "base" $root.Values.stageDefaults "over" $raw) | fromJson -}}
{{- $_ := set $s "name" $name -}}
{{- $_ := set $s "resourceName" (printf "%s-%s" (include "herald.fullname" $root) $name | trunc 52 | trimSuffix "-") -}}
{{- if not $s.args -}}
{{- fail (printf "stages.%s.args is empty: give the herald subcommand, e.g. [%s]" $name $name) -}}
{{- end -}}
{{- /* Kafka: topics exist, partition cap, fixed group name. */ -}}
{{- $parts := include "herald.topicPartitions" $root | fromJson -}}
{{- $kafka := $s.kafka | default dict -}}
{{- $topics := $kafka.topics | default list -}}
{{- $cap := 0 -}}
{{- range $t := $topics -}}
{{- if not (hasKey $parts $t) -}}
{{- fail (printf "stages.%s.kafka.topics: %s is not declared in files/topics.json" $name $t) -}}
{{- end -}}
{{- $cap = add $cap (get $parts $t) -}}
{{- end -}}
{{- $consumer := gt (len $topics) 0 -}}
{{- $_ := set $s "consumer" $consumer -}}
{{- $_ := set $s "partitionCap" $cap -}}
{{- if $consumer -}}
{{- $want := printf "herald-%s" $name -}}
{{- if ne ($kafka.group | default "") $want -}}
{{- fail (printf "stages.%s.kafka.group must be %s: the binary names its group herald-<stage> and plan reads the enrich/deliver groups by these names" $name $want) -}}
{{- end -}}
{{- else if $kafka.group -}}
{{- fail (printf "stages.%s.kafka.group is set but the stage consumes no topics" $name) -}}
{{- end -}}
{{- /* Autoscaler: one of keda, hpa, none. */ -}}
{{- $mode := $s.autoscaling | default "none" -}}
{{- if not (has $mode (list "keda" "hpa" "none")) -}}
{{- fail (printf "stages.%s.autoscaling must be keda, hpa or none, not %q" $name $mode) -}}
{{- end -}}
{{- $autoscaler := "" -}}
{{- if and (eq $mode "keda") $root.Values.keda.enabled -}}
{{- if not $consumer -}}
{{- fail (printf "stages.%s.autoscaling is keda but the stage is not a Kafka consumer: use hpa or none" $name) -}}
{{- end -}}
{{- $autoscaler = "keda" -}}
{{- else if and (eq $mode "hpa") $root.Values.hpa.enabled -}}
{{- $autoscaler = "hpa" -}}
{{- end -}}
{{- $_ := set $s "autoscaler" $autoscaler -}}
{{- $kedaMax := int $s.keda.maxReplicaCount -}}
{{- $hpaMax := int $s.hpa.maxReplicas -}}
{{- if $consumer -}}
{{- $kedaMax = min $kedaMax $cap -}}
{{- $hpaMax = min $hpaMax $cap -}}
{{- end -}}
{{- $_ := set $s "kedaMax" $kedaMax -}}
{{- $_ := set $s "hpaMax" $hpaMax -}}
{{- if and (eq $autoscaler "keda") (gt (int $s.keda.minReplicaCount) $kedaMax) -}}
{{- fail (printf "stages.%s.keda.minReplicaCount (%d) is above its maximum %d (maxReplicaCount capped at the %d partitions of its topics)" $name (int $s.keda.minReplicaCount) $kedaMax $cap) -}}
{{- end -}}
{{- if and (eq $autoscaler "hpa") (gt (int $s.hpa.minReplicas) $hpaMax) -}}
{{- fail (printf "stages.%s.hpa.minReplicas (%d) is above its maximum %d" $name (int $s.hpa.minReplicas) $hpaMax) -}}
{{- end -}}
{{- if and $consumer (not $autoscaler) (gt (int $s.replicas) $cap) -}}
{{- fail (printf "stages.%s.replicas (%d) is above the %d partitions of its topics: the extra members would get no partition and never become ready" $name (int $s.replicas) $cap) -}}
{{- end -}}
{{- /* Most replicas the stage can run; at the partition cap a surge pod would get no partition. */ -}}
{{- $most := int $s.replicas -}}
{{- if eq $autoscaler "keda" -}}{{- $most = $kedaMax -}}{{- else if eq $autoscaler "hpa" -}}{{- $most = $hpaMax -}}{{- end -}}
{{- $_ := set $s "surge" (not (and $consumer (ge (int $most) (int $cap)))) -}}
{{- /* Static membership needs a consumer. */ -}}
{{- if and $s.staticMembership (not $consumer) -}}
{{- fail (printf "stages.%s.staticMembership needs a Kafka consumer stage" $name) -}}
{{- end -}}
{{- $_ := set $s "workloadKind" (ternary "StatefulSet" "Deployment" (eq (toString $s.staticMembership) "true")) -}}
{{- /* Shutdown: preStop sleep for HTTP stages, grace = drain + margin + preStop. */ -}}
{{- $pre := 0 -}}
{{- if $s.http -}}
{{- $pre = int $root.Values.lifecycle.preStopSleepSeconds -}}
{{- end -}}
{{- $_ := set $s "preStopSeconds" $pre -}}
{{- $grace := add (int $root.Values.drainTimeoutSeconds) (int $root.Values.terminationGraceMarginSeconds) $pre -}}
{{- if not (kindIs "invalid" $s.terminationGracePeriodSeconds) -}}
{{- $grace = int $s.terminationGracePeriodSeconds -}}
{{- end -}}
{{- $_ := set $s "grace" $grace -}}
{{- toJson $s -}}
{{- end -}}

{{/* Sorted names of the enabled stages, as JSON list. */}}
{{- define "herald.enabledStages" -}}
{{- $out := list -}}
{{- range $name := keys .Values.stages | sortAlpha -}}
{{- $raw := get $.Values.stages $name -}}
{{- if kindIs "map" $raw -}}
{{- $enabled := $.Values.stageDefaults.enabled -}}
{{- if hasKey $raw "enabled" -}}
{{- if not (kindIs "invalid" $raw.enabled) -}}
{{- $enabled = $raw.enabled -}}
{{- end -}}
{{- end -}}
{{- if $enabled -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Whether a secret entry applies to a stage: (dict "entry" $e "stage" "plan"). */}}
{{- define "herald.secretApplies" -}}
{{- $stages := .entry.stages | default list -}}
{{- if or (eq (len $stages) 0) (has .stage $stages) -}}true{{- end -}}
{{- end -}}

{{/* Validated secret entries, as JSON {"<NAME>": entry}, skipping null/empty entries. */}}
{{- define "herald.secrets" -}}
{{- $out := dict -}}
{{- range $var, $e := .Values.secrets -}}
{{- if and (kindIs "map" $e) $e.secretName -}}
{{- if not (hasPrefix "HERALD_" $var) -}}
{{- fail (printf "secrets.%s: only HERALD_* settings can be set" $var) -}}
{{- end -}}
{{- if not $e.key -}}
{{- fail (printf "secrets.%s.key is empty" $var) -}}
{{- end -}}
{{- $plain := get ($.Values.config | default dict) $var -}}
{{- if and (not (kindIs "invalid" $plain)) (ne (toString $plain) "") -}}
{{- fail (printf "secrets.%s and config.%s are both set: the binary refuses a setting given twice (%s and %s_FILE); keep one" $var $var $var $var) -}}
{{- end -}}
{{- if and $e.asFile $e.optional -}}
{{- fail (printf "secrets.%s: asFile and optional cannot be combined (the binary stops when a <NAME>_FILE it was given is missing); use a variable for optional secrets" $var) -}}
{{- end -}}
{{- $_ := set $out $var $e -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Variables the chart sets itself; `config` and stage env may not set them. */}}
{{- define "herald.reservedVars" -}}
{{- toJson (list "HERALD_HTTP_PORT" "HERALD_DRAIN_TIMEOUT" "HERALD_GROUP_ID" "HERALD_GROUP_INSTANCE_ID") -}}
{{- end -}}

{{/*
A setting's value as the string the binary expects. Helm reads numbers from values files as
float64, so 1000000 would print as 1e+06: whole numbers are printed as integers.
*/}}
{{- define "herald.settingValue" -}}
{{- $v := . -}}
{{- if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else -}}
{{- toString $v -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap data: config (non-empty values) + the chart-managed settings. */}}
{{- define "herald.configData" -}}
{{- $reserved := include "herald.reservedVars" . | fromJsonArray -}}
{{- $out := dict -}}
{{- range $k, $v := .Values.config -}}
{{- if not (hasPrefix "HERALD_" $k) -}}
{{- fail (printf "config.%s: only HERALD_* settings belong in config (see docs/configuration.md)" $k) -}}
{{- end -}}
{{- if has $k $reserved -}}
{{- fail (printf "config.%s is reserved: the chart sets it from httpPort / drainTimeoutSeconds / staticMembership, and group ids are always herald-<stage>" $k) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") -}}
{{- if and (eq $k "HERALD_REDIS_URL") (hasPrefix "rediss://" (toString $v)) -}}
{{- fail "config.HERALD_REDIS_URL: herald has no TLS to Redis (hiredis 0.14) and refuses rediss:// URLs; run a TLS-terminating sidecar (e.g. stunnel) and point HERALD_REDIS_URL at it, redis://[user:password@]127.0.0.1:<port>/<db> (see the chart README)" -}}
{{- end -}}
{{- $_ := set $out $k (include "herald.settingValue" $v) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out "HERALD_HTTP_PORT" (toString (int .Values.httpPort)) -}}
{{- $_ := set $out "HERALD_DRAIN_TIMEOUT" (printf "%ds" (int .Values.drainTimeoutSeconds)) -}}
{{- if .Values.extraSchemasConfigMap -}}
{{- $_ := set $out "HERALD_SCHEMA_DIR" .Values.extraSchemasDir -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Environment entries of a container beyond the ConfigMap: TLS paths, static membership, stage env,
secrets. (dict "root" $ "stage" $s) where $s is a resolved stage, or a map with "name" only for
the migrate Job.
*/}}
{{- define "herald.env" -}}
{{- $root := .root -}}
{{- $s := .stage -}}
{{- $reserved := include "herald.reservedVars" $root | fromJsonArray -}}
{{- with $root.Values.tls.kafka }}
{{- if .secretName }}
- name: HERALD_KAFKA_SSL_CA_LOCATION
  value: {{ printf "/etc/herald/tls/kafka/%s" .caKey | quote }}
{{- if .certKey }}
- name: HERALD_KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ printf "/etc/herald/tls/kafka/%s" .certKey | quote }}
{{- end }}
{{- if .keyKey }}
- name: HERALD_KAFKA_SSL_KEY_LOCATION
  value: {{ printf "/etc/herald/tls/kafka/%s" .keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $root.Values.tls.postgres }}
{{- if .secretName }}
- name: PGSSLROOTCERT
  value: {{ printf "/etc/herald/tls/postgres/%s" .caKey | quote }}
{{- if .sslMode }}
- name: PGSSLMODE
  value: {{ .sslMode | quote }}
{{- end }}
{{- if .certKey }}
- name: PGSSLCERT
  value: {{ printf "/etc/herald/tls/postgres/%s" .certKey | quote }}
{{- end }}
{{- if .keyKey }}
- name: PGSSLKEY
  value: {{ printf "/etc/herald/tls/postgres/%s" .keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if $s.staticMembership }}
- name: HERALD_GROUP_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HERALD_KAFKA_SESSION_TIMEOUT_MS
  value: {{ int $root.Values.staticMembership.sessionTimeoutMs | toString | quote }}
{{- end }}
{{- range $k, $v := ($s.env | default dict) }}
{{- if has $k $reserved }}
{{- fail (printf "stages.%s.env.%s is reserved: the chart sets it from httpPort / drainTimeoutSeconds / staticMembership, and group ids are always herald-<stage>" $s.name $k) }}
{{- end }}
{{- if not (kindIs "invalid" $v) }}
- name: {{ $k }}
  value: {{ include "herald.settingValue" $v | quote }}
{{- end }}
{{- end }}
{{- range $var, $e := include "herald.secrets" $root | fromJson }}
{{- if include "herald.secretApplies" (dict "entry" $e "stage" $s.name) }}
{{- if $e.asFile }}
- name: {{ printf "%s_FILE" $var }}
  value: {{ printf "%s/%s" $root.Values.secretFilesDir $var | quote }}
{{- else }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $e.secretName }}
      key: {{ $e.key }}
      {{- if $e.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes of a pod: /tmp, secret files, TLS, schemas, extra. (dict "root" $ "stage" $s) */}}
{{- define "herald.volumes" -}}
{{- $root := .root -}}
{{- $s := .stage -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- $files := list }}
{{- range $var, $e := include "herald.secrets" $root | fromJson }}
{{- if and $e.asFile (include "herald.secretApplies" (dict "entry" $e "stage" $s.name)) }}
{{- $files = append $files (dict "var" $var "e" $e) }}
{{- end }}
{{- end }}
{{- if $files }}
- name: secret-files
  projected:
    defaultMode: 288  # 0440
    sources:
    {{- range $f := $files }}
      - secret:
          name: {{ $f.e.secretName }}
          items:
            - key: {{ $f.e.key }}
              path: {{ $f.var }}
    {{- end }}
{{- end }}
{{- range $tname := list "kafka" "postgres" "redis" "smtp" }}
{{- $t := get $root.Values.tls $tname | default dict }}
{{- if and $t $t.secretName }}
{{- if or (ne $tname "smtp") (has $s.name ($t.stages | default list)) }}
- name: {{ printf "tls-%s" $tname }}
  secret:
    secretName: {{ $t.secretName }}
    defaultMode: 288  # 0440
{{- end }}
{{- end }}
{{- end }}
{{- if $root.Values.extraSchemasConfigMap }}
- name: extra-schemas
  configMap:
    name: {{ $root.Values.extraSchemasConfigMap }}
{{- end }}
{{- with $s.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "herald.volumeMounts" -}}
{{- $root := .root -}}
{{- $s := .stage -}}
- name: tmp
  mountPath: /tmp
{{- $files := false }}
{{- range $var, $e := include "herald.secrets" $root | fromJson }}
{{- if and $e.asFile (include "herald.secretApplies" (dict "entry" $e "stage" $s.name)) }}
{{- $files = true }}
{{- end }}
{{- end }}
{{- if $files }}
- name: secret-files
  mountPath: {{ $root.Values.secretFilesDir }}
  readOnly: true
{{- end }}
{{- range $tname := list "kafka" "postgres" "redis" "smtp" }}
{{- $t := get $root.Values.tls $tname | default dict }}
{{- if and $t $t.secretName }}
{{- if or (ne $tname "smtp") (has $s.name ($t.stages | default list)) }}
- name: {{ printf "tls-%s" $tname }}
  mountPath: {{ printf "/etc/herald/tls/%s" $tname }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- if $root.Values.extraSchemasConfigMap }}
- name: extra-schemas
  mountPath: {{ printf "%s/events" $root.Values.extraSchemasDir }}
  readOnly: true
{{- end }}
{{- with $s.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Global flags placed before the subcommand (settings the environment cannot carry). */}}
{{- define "herald.globalFlags" -}}
{{- $root := .root -}}
{{- $s := .stage -}}
{{- $out := list -}}
{{- with $root.Values.tls.smtp -}}
{{- if and .secretName (has $s.name (.stages | default list)) -}}
{{- $out = append $out "--smtp-ca-file" -}}
{{- $out = append $out (printf "/etc/herald/tls/smtp/%s" .caKey) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Pod and container security context (non-root 65532, read-only root, no capabilities). */}}
{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "herald.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The pod spec of a stage: (dict "root" $ "stage" $s) with $s from "herald.stage". */}}
{{- define "herald.podSpec" -}}
{{- $root := .root -}}
{{- $s := .stage -}}
{{- $env := include "herald.env" (dict "root" $root "stage" $s) | trim -}}
serviceAccountName: {{ include "herald.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "herald.podSecurityContext" $root | nindent 2 }}
terminationGracePeriodSeconds: {{ int $s.grace }}
{{- with $s.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $s.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $s.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $s.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $s.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $s.topologySpreadConstraints | nindent 2 }}
{{- else if $s.spreadPods }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "herald.selectorLabels" (dict "root" $root "stage" $s.name) | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "herald.selectorLabels" (dict "root" $root "stage" $s.name) | nindent 8 }}
{{- end }}
containers:
  - name: herald
    image: {{ include "herald.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      {{- toYaml $root.Values.image.command | nindent 6 }}
    args:
      {{- range $a := concat (include "herald.globalFlags" (dict "root" $root "stage" $s) | fromJsonArray) $s.args }}
      - {{ $a | toString | quote }}
      {{- end }}
    ports:
      - name: http
        containerPort: {{ int $root.Values.httpPort }}
        protocol: TCP
    envFrom:
      - configMapRef:
          name: {{ include "herald.fullname" $root }}-config
    {{- if $env }}
    env:
      {{- $env | nindent 6 }}
    {{- end }}
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 2
      timeoutSeconds: 2
      failureThreshold: {{ max 1 (div (int $s.probes.startupTimeoutSeconds) 2) }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: {{ int $s.probes.livenessPeriodSeconds }}
      timeoutSeconds: 3
      failureThreshold: {{ int $s.probes.livenessFailureThreshold }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      periodSeconds: {{ int $s.probes.readinessPeriodSeconds }}
      timeoutSeconds: 3
      failureThreshold: 3
    {{- if gt (int $s.preStopSeconds) 0 }}
    lifecycle:
      preStop:
        {{- if eq (include "herald.preStopNative" $root) "true" }}
        sleep:
          seconds: {{ int $s.preStopSeconds }}
        {{- else }}
        exec:
          command:
            {{- range $c := $root.Values.lifecycle.execSleepCommand }}
            - {{ $c | quote }}
            {{- end }}
            - {{ int $s.preStopSeconds | toString | quote }}
        {{- end }}
    {{- end }}
    resources:
      {{- toYaml $s.resources | nindent 6 }}
    securityContext:
      {{- include "herald.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "herald.volumeMounts" (dict "root" $root "stage" $s) | nindent 6 }}
volumes:
  {{- include "herald.volumes" (dict "root" $root "stage" $s) | nindent 2 }}
{{- end -}}
