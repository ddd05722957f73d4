#!/usr/bin/env bash
# Benchmark of the apptainer-plugin daemon, on loopback, in one run (about 1 minute):
#   1. GET /status for one pod vs the ping (GET /status with []), 200 pods running, with wrk;
#   2. daemon RSS: idle, with 200 pods, after the wrk runs;
#   3. time from sending POST /create to the container's first log line (50 pods);
#   4. POST /delete of every pod, then no pod process may be left.
# Prints a markdown table: metric | value | target | ok?  Exit status 1 if a target is missed.
#
# Needs: target/release/apptainer-plugin (cargo build --release), wrk, python3.
# Knobs (environment): BIN, WRK_THREADS (2), WRK_CONNS (16), WRK_DURATION (10s),
# RUNNING_PODS (200), LATENCY_PODS (50).
# The "containers" are run by fixtures/apptainer (a fake apptainer that runs the command on the
# host). Every pod process gets BENCH_TAG=<unique tag> in its environment: that is how leftover
# processes are found (and, on exit, killed by PID) without touching anything else.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
BIN=${BIN:-$repo/target/release/apptainer-plugin}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-16}
WRK_DURATION=${WRK_DURATION:-10s}
RUNNING_PODS=${RUNNING_PODS:-200}
LATENCY_PODS=${LATENCY_PODS:-50}

say() { printf '[bench] %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 2
}

[[ -x $BIN ]] || die "$BIN not found: run 'cargo build --release' first (or set BIN)"
command -v python3 >/dev/null || die "python3 is needed"
if ! command -v wrk >/dev/null; then
    say "wrk missing: apt-get install -y wrk"
    { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; }; } ||
        die "could not install wrk"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/apptainer-bench.XXXXXX")
tag="bench-$$-${tmp##*.}"
daemon_pid=
drv="$tmp/drv.py"

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    # Pod processes that survived (a failed run, or a delete that left some): by PID.
    if [[ -f $drv ]]; then
        local pids
        pids=$(python3 "$drv" procs "$tag" 0 --pids 2>/dev/null || true)
        if [[ -n $pids ]]; then
            say "killing $(wc -w <<<"$pids") leftover pod process(es)"
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ python driver
cat >"$drv" <<'PY'
import http.client, json, os, sys, time, uuid, statistics, math, threading, signal

# Ctrl-C: die of SIGINT (no traceback) so that the calling shell stops too.
signal.signal(signal.SIGINT, signal.SIG_DFL)

def conn(port):
    # http.client speaks HTTP/1.1 and sends Host; one keep-alive connection per caller.
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

def call(c, method, path, body):
    data = json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", "InterLink-Http-Session": "bench"}
    for attempt in (0, 1):
        try:
            c.request(method, path, data, hdrs)
            r = c.getresponse()
            return r.status, r.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            c.close()
            if attempt:
                raise

def pod(name, uid, cmd, tag):
    return {
        "metadata": {
            "name": name, "namespace": "bench", "uid": uid, "resourceVersion": "1",
            "creationTimestamp": "2026-12-01T10:00:00Z", "annotations": {},
            "labels": {"app": "bench"},
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                               "apiVersion": "v1", "time": "2026-12-01T10:00:00Z",
                               "fieldsType": "FieldsV1", "fieldsV1": {}}],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "containers": [{
                "name": "main", "image": "docker.io/library/busybox:1.36", "command": cmd,
                "env": [{"name": "BENCH_TAG", "value": tag}],
                "resources": {},
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "nodeName": "apptainer-node",
        },
        "status": {"phase": "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                   "startTime": "2026-12-01T10:00:01Z"},
    }

def create_body(p):
    return {
        "pod": p,
        "container": [{"name": "main", "configMaps": None, "secrets": None, "emptyDirs": None,
                       "projectedvolumemaps": [{"metadata": {"name": "kube-api-access", "creationTimestamp": None},
                                                "data": {"token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2ln",
                                                         "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                                                         "namespace": "bench"}}]}],
        "jobConfig": {},
    }

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return []

def save(path, pods):
    with open(path, "w") as f:
        json.dump(pods, f)

def state_of(c, p):
    st, body = call(c, "GET", "/status", [p])
    if st != 200:
        return "http-%d" % st
    try:
        s = json.loads(body)[0]["containers"][0]["state"]
        return next(iter(s))
    except Exception:
        return "bad-answer"

def pct(xs, q):
    xs = sorted(xs)
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]

def main():
    cmd, port = sys.argv[1], None
    if cmd == "procs":
        # procs TAG EXCLUDE_PID [--pids]: processes whose environment holds BENCH_TAG=TAG.
        want = ("BENCH_TAG=" + sys.argv[2]).encode()
        excl = {int(sys.argv[3]), os.getpid()}
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) in excl:
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if want not in f.read().split(b"\0"):
                        continue
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    argv = f.read().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            found.append((int(d), b" ".join(argv).decode(errors="replace")))
        if "--pids" in sys.argv:
            print(" ".join(str(p) for p, _ in found))
        else:
            # The pods' `sleep 3600` itself (not the `sh -c "...; sleep 3600"` around it).
            sleeps = [p for p, a in found if a.split(" ")[0].endswith("sleep") and a.endswith(" 3600")]
            print("total=%d sleep=%d" % (len(found), len(sleeps)))
            if "--show" in sys.argv:
                for p, a in found[:5]:
                    print("  left: pid %d: %s" % (p, a[:100]), file=sys.stderr)
        return

    port = int(sys.argv[2])
    c = conn(port)
    if cmd == "ping":
        st, body = call(c, "GET", "/status", [])
        sys.exit(0 if st == 200 else 1)

    if cmd == "create-running":
        # create-running PORT N TAG PODSFILE STATUSBODYFILE
        n, tag, podsfile, bodyfile = int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
        pods, lat = [], []
        t0 = time.perf_counter()
        for i in range(n):
            p = pod("sleeper-%03d" % i, str(uuid.uuid4()), ["/bin/sleep", "3600"], tag)
            t = time.perf_counter()
            st, body = call(c, "POST", "/create", create_body(p))
            lat.append(time.perf_counter() - t)
            if st != 200:
                sys.exit("create %s: HTTP %d: %s" % (p["metadata"]["name"], st, body[:200]))
            pods.append(p)
            save(podsfile, pods)
        t_create = time.perf_counter() - t0
        # Wait until every container reports running.
        deadline, pending = time.monotonic() + 60, list(pods)
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if state_of(c, p) != "running"]
            if pending:
                time.sleep(0.2)
        if pending:
            sys.exit("%d pod(s) not running after 60 s, e.g. %s: %s"
                     % (len(pending), pending[0]["metadata"]["name"], state_of(c, pending[0])))
        t_running = time.perf_counter() - t0
        with open(bodyfile, "w") as f:
            json.dump([pods[n // 2]], f)
        # /status with every pod in one request (older interLink): one timing, for information.
        t = time.perf_counter()
        st, body = call(c, "GET", "/status", pods)
        t_all = time.perf_counter() - t
        ok_all = st == 200 and len(json.loads(body)) == n
        print("create_wall_s=%.2f create_median_ms=%.2f all_running_s=%.2f status_all_ms=%.1f status_all_ok=%d"
              % (t_create, statistics.median(lat) * 1e3, t_running, t_all * 1e3, ok_all))
        return

    if cmd == "check-status":
        # check-status PORT BODYFILE: the pod's container must be running.
        with open(sys.argv[3]) as f:
            p = json.load(f)[0]
        s = state_of(c, p)
        print(s)
        sys.exit(0 if s == "running" else 1)

    if cmd == "first-log":
        # first-log PORT N TAG PODSFILE DATAROOT
        n, tag, podsfile, root = int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
        pods = load(podsfile)
        first, created, misses = [], [], 0
        for i in range(n):
            uid = str(uuid.uuid4())
            p = pod("first-log-%03d" % i, uid, ["/bin/sh", "-c", "echo first; sleep 3600"], tag)
            log = os.path.join(root, "bench-" + uid, "containers", "main", "log")
            body = create_body(p)
            time.sleep(0.02)  # let the previous pod settle: one measurement at a time
            t0 = time.perf_counter()
            st, rb = call(c, "POST", "/create", body)
            t1 = time.perf_counter()
            if st != 200:
                sys.exit("create %s: HTTP %d: %s" % (p["metadata"]["name"], st, rb[:200]))
            pods.append(p)
            save(podsfile, pods)
            created.append(t1 - t0)
            deadline = t0 + 5.0
            while True:
                try:
                    with open(log, "rb") as f:
                        if b"first" in f.read():
                            break
                except FileNotFoundError:
                    pass
                if time.perf_counter() > deadline:
                    break
                time.sleep(0.001)
            t2 = time.perf_counter()
            if t2 > deadline:
                misses += 1
                print("no first log line after 5 s: %s" % log, file=sys.stderr)
            else:
                first.append(t2 - t0)
        if not first:
            sys.exit("no first log line at all")
        print("first_median_ms=%.1f first_p90_ms=%.1f first_max_ms=%.1f create_median_ms=%.2f misses=%d n=%d"
              % (statistics.median(first) * 1e3, pct(first, 90) * 1e3, max(first) * 1e3,
                 statistics.median(created) * 1e3, misses, len(first)))
        return

    if cmd == "delete-all":
        # delete-all PORT PODSFILE WORKERS
        pods, workers = load(sys.argv[3]), int(sys.argv[4])
        bad, lock, it = [], threading.Lock(), iter(pods)
        def worker():
            cc = conn(port)
            while True:
                with lock:
                    p = next(it, None)
                if p is None:
                    return
                try:
                    st, body = call(cc, "POST", "/delete", p)
                except Exception as e:
                    st, body = -1, str(e).encode()
                if st != 200:
                    with lock:
                        bad.append("%s: %s %s" % (p["metadata"]["name"], st, body[:120]))
        t0 = time.perf_counter()
        ts = [threading.Thread(target=worker) for _ in range(workers)]
        for t in ts: t.start()
        for t in ts: t.join()
        for b in bad[:3]:
            print("delete failed: " + b, file=sys.stderr)
        print("deleted=%d failed=%d delete_wall_s=%.2f" % (len(pods) - len(bad), len(bad), time.perf_counter() - t0))
        return
    sys.exit("unknown command " + cmd)

main()
PY

# ------------------------------------------------------------------ helpers
kv() { # kv KEY "k=v k=v ..." -> v
    local k=$1 w
    for w in $2; do [[ $w == "$k="* ]] && { printf '%s' "${w#*=}"; return; }; done
    printf 'NA'
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$daemon_pid/status"; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
alive() { kill -0 "$daemon_pid" 2>/dev/null || die "the daemon died; its log: $(tail -5 "$tmp/daemon.log")"; }

rows=()
failed=0
row() { # metric value target ok
    rows+=("| $1 | $2 | $3 | $4 |")
    [[ $4 == no ]] && failed=1
    return 0
}
check() { # check VALUE OP LIMIT -> yes/no (floats)
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{
        if (v == "NA") { print "no"; exit }
        ok = (op == "<=") ? (v + 0 <= l + 0) : (op == ">=") ? (v + 0 >= l + 0) : (v + 0 == l + 0)
        print ok ? "yes" : "no" }'
}

# ------------------------------------------------------------------ start
cat >"$tmp/config.yaml" <<EOF
SidecarPort: 0
DataRootFolder: $tmp/jobs
ApptainerPath: $repo/fixtures/apptainer
ApptainerDefaultOptions: []
EOF
BENCH_TAG=$tag "$BIN" --config "$tmp/config.yaml" 2>"$tmp/daemon.log" >/dev/null &
daemon_pid=$!
port=
for _ in $(seq 100); do
    port=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$tmp/daemon.log" 2>/dev/null | head -1 | sed 's/.*://') || true
    [[ -n $port ]] && break
    alive
    sleep 0.05
done
[[ -n $port ]] || die "no 'listening on' line after 5 s"
sleep 0.2
rss_idle=$(rss_kb)
python3 "$drv" ping "$port" || die "ping failed"
say "daemon pid $daemon_pid on port $port, idle RSS $(mib "$rss_idle") MiB; creating $RUNNING_PODS pods"

# ------------------------------------------------------------------ 200 running pods
out=$(python3 "$drv" create-running "$port" "$RUNNING_PODS" "$tag" "$tmp/pods.json" "$tmp/status-body.json") ||
    die "creating the running pods failed"
alive
sleep 0.5
rss_pods=$(rss_kb)
procs=$(python3 "$drv" procs "$tag" "$daemon_pid")
say "$out; $procs"

# ------------------------------------------------------------------ wrk: ping vs status
wrk_us=$(awk -v d="$WRK_DURATION" 'BEGIN{ n = d + 0; u = substr(d, length(n "") + 1)
    print n * (u == "m" ? 60 : u == "h" ? 3600 : 1) * 1e6 }')
run_wrk() { # run_wrk BODYFILE -> WRK_RESULT line in $wrk_out
    wrk_out=$(STATUS_BODY_FILE=$1 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency \
        -s "$here/status.lua" "http://127.0.0.1:$port/status" | grep '^WRK_RESULT') || die "wrk failed"
    # wrk stops early and reports normally on Ctrl-C, and bash then ignores the SIGINT.
    (($(kv duration_us "$wrk_out") >= wrk_us * 9 / 10)) || die "wrk was interrupted"
}
say "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION: ping, status, ping, status"
run_wrk ""; ping1=$wrk_out
run_wrk "$tmp/status-body.json"; stat1=$wrk_out
run_wrk ""; ping2=$wrk_out
run_wrk "$tmp/status-body.json"; stat2=$wrk_out
alive
python3 "$drv" check-status "$port" "$tmp/status-body.json" >/dev/null ||
    say "WARNING: the wrk pod is not reported running after the wrk runs"
rss_wrk=$(rss_kb)

wrk_errors=0
for r in "$ping1" "$stat1" "$ping2" "$stat2"; do
    for k in err_connect err_read err_write err_status err_timeout; do
        wrk_errors=$((wrk_errors + $(kv "$k" "$r")))
    done
done
read -r ping_rps stat_rps ratio stat_p99 stat_p50 ping_p99 < <(awk \
    -v p1="$(kv rps "$ping1")" -v p2="$(kv rps "$ping2")" \
    -v s1="$(kv rps "$stat1")" -v s2="$(kv rps "$stat2")" \
    -v q1="$(kv p99_us "$stat1")" -v q2="$(kv p99_us "$stat2")" \
    -v m1="$(kv p50_us "$stat1")" -v m2="$(kv p50_us "$stat2")" \
    -v r1="$(kv p99_us "$ping1")" -v r2="$(kv p99_us "$ping2")" 'BEGIN{
        p = (p1 + p2) / 2; s = (s1 + s2) / 2
        printf "%.0f %.0f %.2f %.2f %.2f %.2f\n", p, s, s / p,
            (q1 > q2 ? q1 : q2) / 1000, (m1 > m2 ? m1 : m2) / 1000, (r1 > r2 ? r1 : r2) / 1000 }')
say "ping $(kv rps "$ping1") / $(kv rps "$ping2") req/s, status $(kv rps "$stat1") / $(kv rps "$stat2") req/s"

# ------------------------------------------------------------------ create -> first log line
say "create -> first log line, $LATENCY_PODS pods (one at a time, $RUNNING_PODS pods still running)"
first=$(python3 "$drv" first-log "$port" "$LATENCY_PODS" "$tag" "$tmp/pods.json" "$tmp/jobs") ||
    die "first-log measurement failed"
alive
rss_all=$(rss_kb)
total_pods=$((RUNNING_PODS + LATENCY_PODS))

# ------------------------------------------------------------------ delete everything
before=$(python3 "$drv" procs "$tag" "$daemon_pid")
say "deleting $total_pods pods ($before)"
del=$(python3 "$drv" delete-all "$port" "$tmp/pods.json" 8) || die "delete driver failed"
after=$(python3 "$drv" procs "$tag" "$daemon_pid")
left_sleep=$(kv sleep "$after")
left_total=$(kv total "$after")
if [[ $left_total != 0 ]]; then
    sleep 3
    after3=$(python3 "$drv" procs "$tag" "$daemon_pid" --show)
    say "pod processes left right after the deletes: $after; 3 s later: $after3"
fi
alive
dirs_left=$(find "$tmp/jobs" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
rss_end=$(rss_kb)

# ------------------------------------------------------------------ report
row "ping req/s (GET /status [], mean of 2 runs)" "$ping_rps" "—" "—"
row "status req/s (GET /status, 1 pod, mean of 2 runs)" "$stat_rps" "—" "—"
row "status / ping ratio" "$ratio" ">= 0.5" "$(check "$ratio" '>=' 0.5)"
row "status p99 latency (worse of 2 runs); p50" "$stat_p99 ms; $stat_p50 ms" "—" "—"
row "ping p99 latency (worse of 2 runs)" "$ping_p99 ms" "—" "—"
row "wrk socket errors + non-2xx (4 runs)" "$wrk_errors" "0" "$(check "$wrk_errors" '==' 0)"
row "RSS idle, right after start" "$(mib "$rss_idle") MiB" "<= 10 MiB" "$(check "$rss_idle" '<=' 10240)"
row "RSS with $RUNNING_PODS pods running" "$(mib "$rss_pods") MiB" "<= 30 MiB" "$(check "$rss_pods" '<=' 30720)"
row "RSS with $RUNNING_PODS pods, after wrk" "$(mib "$rss_wrk") MiB" "<= 30 MiB" "$(check "$rss_wrk" '<=' 30720)"
row "RSS with $total_pods pods; after deleting all" "$(mib "$rss_all") MiB; $(mib "$rss_end") MiB" "—" "—"
row "create $RUNNING_PODS pods (sequential): wall; median answer" "$(kv create_wall_s "$out") s; $(kv create_median_ms "$out") ms" "—" "—"
row "GET /status with all $RUNNING_PODS pods in one request" "$(kv status_all_ms "$out") ms (complete: $(kv status_all_ok "$out"))" "—" "—"
row "create -> first log line, median ($(kv n "$first") pods, $RUNNING_PODS others running)" "$(kv first_median_ms "$first") ms" "<= 50 ms" "$(check "$(kv first_median_ms "$first")" '<=' 50)"
row "create -> first log line, p90; max" "$(kv first_p90_ms "$first") ms; $(kv first_max_ms "$first") ms" "—" "—"
row "create answer time, median (first-log pods)" "$(kv create_median_ms "$first") ms" "—" "—"
row "first log line missing after 5 s" "$(kv misses "$first")" "0" "$(check "$(kv misses "$first")" '==' 0)"
row "delete $total_pods pods (8 concurrent): failed; wall" "$(kv failed "$del"); $(kv delete_wall_s "$del") s" "0 failed" "$(check "$(kv failed "$del")" '==' 0)"
row "'sleep 3600' processes left after delete (all pod processes)" "$left_sleep ($left_total)" "0" "$(check "$left_total" '==' 0)"
row "pod directories left after delete" "$dirs_left" "—" "—"

printf '\n| metric | value | target | ok? |\n|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
exit "$failed"
