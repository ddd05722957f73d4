# shellcheck shell=bash disable=SC2154
# The functions every generated job.sh starts with. log_writer, setsid, grace_s and the
# backoff_* settings are assigned by the lines job.sh has after this part.
set -u

# ts: the current time as RFC 3339 UTC with microseconds into REPLY; no fork on bash >= 5.
ts() {
  local t=${EPOCHREALTIME:-}
  if [[ -n $t ]]; then
    # The fraction's separator follows the locale: split on either.
    TZ=UTC printf -v REPLY '%(%Y-%m-%dT%H:%M:%S)T.%sZ' "${t%[.,]*}" "${t#*[.,]}"
  else
    REPLY=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  fi
}

# now_ms: milliseconds since the epoch into REPLY.
now_ms() {
  local t=${EPOCHREALTIME:-}
  if [[ -n $t ]]; then
    t=${t/[.,]/}
    REPLY=$((10#$t / 1000))
  else
    REPLY=$(($(date +%s%N) / 1000000))
  fi
}

# oom_kills: how many processes the kernel's OOM killer has killed in this job's memory cgroup
# (v2 memory.events or v1 memory.oom_control), into REPLY; 0 where that cannot be read.
oom_kills() {
  local line file k v
  REPLY=0
  while IFS= read -r line; do
    case $line in
    0::*) file=/sys/fs/cgroup${line#0::}/memory.events ;;
    *:memory:*) file=/sys/fs/cgroup/memory${line#*:memory:}/memory.oom_control ;;
    *) continue ;;
    esac
    [[ -r $file ]] || continue
    while read -r k v; do [[ $k == oom_kill ]] && REPLY=$v; done <"$file"
  done </proc/self/cgroup
}

# run_container NAME POLICY POSTSTART ARGV...: runs one container with stdin from /dev/null, its stdout
# and stderr merged into one pipe to the log writer (which stamps when each piece was written),
# in a process group of its own (its PID in containers/NAME/pid), so that it can be stopped
# alone. POLICY (Always, OnFailure, Never) says whether it runs again after it exits, after the
# kubelet's back-off. POSTSTART names its postStart hook function, or is -. Appends start,
# exit and backoff lines to its status file.
run_container() {
  local name=$1 policy=$2 post_start=$3 rc started delay=$backoff_initial_ms stopping='' oom_before
  shift 3
  # A SIGTERM (a delete, or the pod's end for a sidecar) means: no more restarts. The shell
  # outlives the container it waits for and records its exit.
  trap 'stopping=1' TERM
  while :; do
    ts
    printf 'start %s\n' "$REPLY" >>"containers/$name/status"
    now_ms
    started=$REPLY
    : >"containers/$name/pid"
    : >"containers/$name/termination-log"
    oom_kills
    oom_before=$REPLY
    [[ $post_start == - ]] || run_post_start "$name" "$post_start" &
    # The writer ignores SIGTERM: what the container says while stopping is still logged.
    { printf '%s\n' "$BASHPID" >"containers/$name/pid"; exec "$setsid" "$@"; } </dev/null 2>&1 |
      (trap '' TERM; exec "$log_writer" log-writer "containers/$name")
    rc=${PIPESTATUS[0]}
    # A SIGKILL while the cgroup's OOM kill count grew: the kernel killed it for memory.
    if ((rc == 137)); then
      oom_kills
      ((REPLY > oom_before)) && printf 'oom %s\n' "$REPLY" >>"containers/$name/status"
    fi
    ts
    printf 'exit %s %s\n' "$rc" "$REPLY" >>"containers/$name/status"
    [[ -n $stopping ]] && return "$rc"
    case $policy in
    Never) return "$rc" ;;
    OnFailure) ((rc == 0)) && return 0 ;;
    esac
    now_ms
    ((REPLY - started >= backoff_reset_ms)) && delay=$backoff_initial_ms
    ts
    printf 'backoff %s %s\n' "$delay" "$REPLY" >>"containers/$name/status"
    # In the background, so that a SIGTERM interrupts the wait at once.
    sleep "$((delay / 1000)).$((delay % 1000 / 100))$((delay % 100 / 10))$((delay % 10))" &
    wait "$!"
    [[ -n $stopping ]] && return "$rc"
    delay=$((delay * 2 > backoff_max_ms ? backoff_max_ms : delay * 2))
  done
}

# run_post_start NAME FN: runs a container's postStart hook as soon as the container has
# started, concurrently with it; if the hook fails, the container is stopped (SIGTERM, then
# SIGKILL after the grace period) and its policy decides what follows.
run_post_start() {
  local name=$1 fn=$2 i=0 pid
  until [[ -s containers/$name/pid ]] || ((i++ > 1000)); do sleep 0.01; done
  "$fn" >>"containers/$name/hooks.log" 2>&1 && return 0
  ts
  printf 'poststart-failed %s\n' "$REPLY" >>"containers/$name/status"
  pid=$(<"containers/$name/pid")
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  sleep "$grace_s"
  kill -KILL -- "-$pid" 2>/dev/null
  return 0
}

# http_get HOST PORT PATH [NAME VALUE]...: an httpGet hook, with bash's own /dev/tcp; it
# succeeds when the answer's status is 200-399.
http_get() {
  local host=$1 port=$2 path=$3 code
  shift 3
  exec 9<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: kube-lifecycle/1.34\r\nConnection: close\r\n' "$path" "$host" "$port" >&9
  while (($# >= 2)); do
    printf '%s: %s\r\n' "$1" "$2" >&9
    shift 2
  done
  printf '\r\n' >&9
  IFS=' ' read -r -t 10 _ code _ <&9
  exec 9<&-
  [[ $code =~ ^[0-9]+$ ]] && ((code >= 200 && code < 400))
}

# stop_sidecars NAME PID...: the pod's regular containers are done; stop its native sidecars
# (the shells first, so that they do not restart them, then the containers' groups).
stop_sidecars() {
  local names=() pids=() i
  while (($#)) && [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  pids=("$@")
  kill -TERM "${pids[@]}" 2>/dev/null
  for i in "${names[@]}"; do kill -TERM -- "-$(<"containers/$i/pid")" 2>/dev/null; done
  for i in "${pids[@]}"; do
    wait "$i"
    while kill -0 "$i" 2>/dev/null; do wait "$i"; done
  done
}

trap ':' TERM
