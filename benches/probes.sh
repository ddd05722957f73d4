#!/usr/bin/env bash
# Benchmark of the probe engine, in one run on loopback (about two minutes): 200 pods, each with
# an httpGet readiness probe every second against one shared HTTP server that records when
# every probe arrives. Measures the daemon's CPU over 60 s (target <= 5% of one core) and the
# jitter of each pod's probe period (target p99 <= 100 ms), and checks every pod got ready.
# Needs target/release/apptainer-plugin (cargo build --release) and python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
BIN=${BIN:-$repo/target/release/apptainer-plugin}
PODS=${PODS:-200}
WINDOW=${WINDOW:-60}
[[ -x $BIN ]] || { echo "build first: cargo build --release" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/probes-bench.XXXXXX")
daemon= server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null
    [[ -n $daemon ]] && kill -9 "$daemon" 2>/dev/null
    # Each pod's job group, and each container's own group.
    for f in "$tmp"/jobs/*/pod.json; do
        [[ -e $f ]] && kill -9 -- "-$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["pid"])' "$f")" 2>/dev/null
    done
    for f in "$tmp"/jobs/*/containers/*/pid; do
        [[ -s $f ]] && kill -9 -- "-$(<"$f")" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# The probed server: answers 200 to any path and appends "path monotonic-time" per request.
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
python3 - "$port" "$tmp/probes.log" <<'PY' &
import http.server, sys, time
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(f"{self.path} {time.monotonic():.6f}\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
server=$!

cat >"$tmp/config.yaml" <<EOF
SidecarPort: 0
DataRootFolder: $tmp/jobs
ApptainerPath: $repo/fixtures/apptainer
ApptainerDefaultOptions: []
EnableProbes: true
EOF
"$BIN" --config "$tmp/config.yaml" 2>"$tmp/daemon.log" &
daemon=$!
for _ in $(seq 100); do grep -q listening "$tmp/daemon.log" && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.:]*' "$tmp/daemon.log" | head -1)

echo "[bench] creating $PODS pods with a readiness probe every second" >&2
python3 - "$url" "$port" "$PODS" <<'PY'
import http.client, json, sys, urllib.parse
url, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(n):
    pod = {"pod": {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"probe-{i}"},
           "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 1, "containers": [
               {"name": "c", "image": "docker://x", "command": ["sleep", "3600"],
                "readinessProbe": {"httpGet": {"path": f"/pod-{i}", "port": port}, "periodSeconds": 1}}]}}}
    c.request("POST", "/create", body=json.dumps(pod), headers={"Host": "x"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
sleep 10
cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
ticks=$(getconf CLK_TCK)
start_mono=$(python3 -c 'import time;print(time.monotonic())')
c0=$(cpu)
echo "[bench] measuring for ${WINDOW}s" >&2
sleep "$WINDOW"
c1=$(cpu)
end_mono=$(python3 -c 'import time;print(time.monotonic())')

ready=$(python3 - "$url" "$PODS" <<'PY'
import http.client, json, sys, urllib.parse
url, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
pods = [{"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"probe-{i}"}} for i in range(n)]
c.request("GET", "/status", body=json.dumps(pods), headers={"Host": "x"})
st = json.loads(c.getresponse().read())
print(sum(1 for p in st if p["containers"][0]["ready"]))
PY
)

python3 - "$tmp/probes.log" "$start_mono" "$end_mono" "$c0" "$c1" "$ticks" "$WINDOW" "$ready" "$PODS" <<'PY'
import collections, statistics, sys
log, t0, t1, c0, c1, ticks, window, ready, pods = sys.argv[1:]
t0, t1, window = float(t0), float(t1), float(window)
times = collections.defaultdict(list)
for line in open(log):
    path, t = line.split()
    t = float(t)
    if t0 <= t <= t1:
        times[path].append(t)
jitter = sorted(abs((b - a) - 1.0) * 1000 for ts in times.values() for a, b in zip(ts, ts[1:]))
cpu = (int(c1) - int(c0)) / int(ticks) / window * 100
p99 = jitter[int(len(jitter) * 0.99) - 1]
probes = sum(len(v) for v in times.values())
rows = [
    ("pods probed / ready", f"{len(times)} / {ready} of {pods}", "all", len(times) == int(pods) and int(ready) == int(pods)),
    ("probes answered in the window", f"{probes} ({probes/window:.0f}/s)", "", True),
    ("daemon CPU over the window", f"{cpu:.2f}% of one core", "<= 5%", cpu <= 5),
    ("probe period jitter, median / p99 / max", f"{statistics.median(jitter):.1f} / {p99:.1f} / {jitter[-1]:.1f} ms", "p99 <= 100 ms", p99 <= 100),
]
print("\n| metric | value | target | ok? |\n|---|---|---|---|")
for m, v, t, ok in rows:
    print(f"| {m} | {v} | {t} | {'yes' if ok else 'NO'} |")
PY
