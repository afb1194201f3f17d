#!/bin/sh
# musicgen_metrics in a running nginx with two worker processes: the output
# parses with Prometheus' own text parser (python3-prometheus-client), the
# counters are the sums of what every worker did (the access log shows both
# served requests), and a reload (nginx -s reload: new workers, the old
# ones exit) keeps them. Usage: tests/nginx_metrics.sh MODULE.so MODEL_DIR
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
PORT=${TEST_NGINX_METRICS_PORT:-1993}
# Debian's python3, which python3-prometheus-client installs for (a python3
# earlier in PATH may be another)
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
TMP=$(mktemp -d)
passed=0 failed=0
mkdir -p "$TMP/logs"
# reuseport: each worker accepts on its own socket and the kernel spreads the
# connections over them, so both workers serve some of the requests
cat > "$TMP/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 2;
error_log $TMP/logs/error.log info;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    log_format worker '\$pid \$status \$musicgen_result';
    access_log $TMP/logs/access.log worker;
    client_body_temp_path $TMP/body;
    musicgen_model $MODEL;
    server {
        listen 127.0.0.1:$PORT reuseport;
        location /generate { musicgen on; musicgen_max_duration 40; }
        location /short { musicgen on; musicgen_max_duration 40; musicgen_timeout 200ms; musicgen_stream off; }
        location /metrics { musicgen_metrics; }
    }
}
CONF
cleanup() { "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s stop 2>/dev/null; sleep 0.3; rm -rf "$TMP"; }
trap cleanup EXIT
check() { # $1 = description, rest = test
    d=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $d"; else failed=$((failed + 1)); echo "FAIL - $d"; fi
}
# metric FILE EXPR: checks a Python expression over the parsed samples of the
# metrics text in FILE: v(name, label=value, ...) is a sample's value (None
# when absent), fam is {family name: type}; the parser rejects what is not
# the text exposition format
metric() {
    "$PYTHON" - "$1" "$2" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
fam, samples = {}, []
for f in text_string_to_metric_families(text):
    fam[f.name] = f.type
    samples += f.samples
def v(name, **labels):
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == x for k, x in labels.items())]
    return hits[0] if len(hits) == 1 else None
ok = eval('(' + sys.argv[2] + ')')
sys.exit(0 if ok else 1)
PY
}
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" || { echo "nginx did not start"; echo "0 passed, 1 failed"; exit 1; }
sleep 0.5
URL=http://127.0.0.1:$PORT
M=demo-model

# 16 generations on new connections, 8 of 1 s and 8 of 2 s: 24 s of audio
i=0
while [ $i -lt 16 ]; do
    curl -s -m 30 -o /dev/null "$URL/generate?prompt=metrics$i&duration=$((1 + i % 2))&seed=$i" &
    i=$((i + 1))
done
wait
curl -s -m 10 -o /dev/null "$URL/generate?prompt=&duration=1"                 # 400
curl -s -m 30 -o /dev/null "$URL/short?prompt=long&duration=40&seed=1"         # 504
sleep 0.3
curl -s -m 5 -D "$TMP/headers" -o "$TMP/m1" "$URL/metrics"
check "served as the text format 0.0.4" grep -qi '^Content-Type: text/plain; version=0.0.4' "$TMP/headers"
check "the parser reads every family, with its type" metric "$TMP/m1" \
    "fam == {'musicgen_requests': 'counter', 'musicgen_generations': 'counter',
             'musicgen_queue_rejections': 'counter', 'musicgen_audio_seconds': 'counter',
             'musicgen_compute_seconds': 'counter', 'musicgen_queue_depth': 'gauge',
             'musicgen_running_jobs': 'gauge', 'musicgen_first_audio_seconds': 'histogram',
             'musicgen_generation_seconds': 'histogram', 'musicgen_model_loaded': 'gauge',
             'musicgen_model_load_failures': 'counter'}"
check "both workers served generations" \
    [ "$(awk '$3 == "ok" { print $1 }' "$TMP/logs/access.log" | sort -u | wc -l)" -eq 2 ]
check "requests by status: 16 x 200, one 400, one 504" metric "$TMP/m1" \
    "v('musicgen_requests_total', status='200') == 16 and v('musicgen_requests_total', status='400') == 1
     and v('musicgen_requests_total', status='504') == 1"
check "16 generations completed, one timed out, none failed or cancelled" metric "$TMP/m1" \
    "v('musicgen_generations_total', model='$M', result='completed') == 16
     and v('musicgen_generations_total', model='$M', result='timed_out') == 1
     and v('musicgen_generations_total', model='$M', result='failed') == 0
     and v('musicgen_generations_total', model='$M', result='cancelled') == 0"
check "24 s of audio generated" metric "$TMP/m1" "v('musicgen_audio_seconds_total', model='$M') == 24"
check "histograms: 16 observations, cumulative buckets ending at the count" metric "$TMP/m1" \
    "all(v(h + '_count', model='$M') == 16 and v(h + '_bucket', model='$M', le='+Inf') == 16
         and v(h + '_sum', model='$M') > 0
         and [s.value for s in samples if s.name == h + '_bucket']
             == sorted(s.value for s in samples if s.name == h + '_bucket')
         for h in ('musicgen_first_audio_seconds', 'musicgen_generation_seconds'))"
check "the generation-time sum is the compute seconds' total" metric "$TMP/m1" \
    "abs(v('musicgen_generation_seconds_sum', model='$M') - v('musicgen_compute_seconds_total', model='$M')) < 1e-6"
check "nothing queued or running once all answered" metric "$TMP/m1" \
    "v('musicgen_queue_depth', model='$M') == 0 and v('musicgen_running_jobs', model='$M') == 0"
check "two workers hold the model on the cpu with f32 weights" metric "$TMP/m1" \
    "v('musicgen_model_loaded', model='$M', device='cpu', weights='f32') == 2
     and v('musicgen_model_load_failures_total', model='$M', device='cpu') == 0"

# a reload: new workers, the old ones exit; the counters go on from theirs
workers() { pgrep -P "$(cat "$TMP/logs/nginx.pid")"; }
old_left() { workers | grep -qxF "$old"; }  # any of the old workers still there
old=$(workers)
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s reload
n=0
while [ $n -lt 100 ] && old_left; do
    sleep 0.1; n=$((n + 1))
done
check "the reload replaced both workers" sh -c "[ $(echo "$old" | wc -l) -eq 2 ] && [ $(workers | wc -l) -eq 2 ]"
check "none of the old ones is left" eval '! old_left'
sleep 0.5
curl -s -m 5 -o "$TMP/m2" "$URL/metrics"
check "after the reload the counters are the old workers' (not reset)" metric "$TMP/m2" \
    "v('musicgen_generations_total', model='$M', result='completed') == 16
     and v('musicgen_audio_seconds_total', model='$M') == 24
     and v('musicgen_requests_total', status='200') == 16"
check "the exited workers took back their share of the load gauge" metric "$TMP/m2" \
    "v('musicgen_model_loaded', model='$M', device='cpu', weights='f32') == 2"
i=0
while [ $i -lt 4 ]; do
    curl -s -m 30 -o /dev/null "$URL/generate?prompt=after$i&duration=1&seed=$i" &
    i=$((i + 1))
done
wait
sleep 0.3
curl -s -m 5 -o "$TMP/m3" "$URL/metrics"
check "the new workers add to them: 20 completed, 28 s of audio" metric "$TMP/m3" \
    "v('musicgen_generations_total', model='$M', result='completed') == 20
     and v('musicgen_audio_seconds_total', model='$M') == 28
     and v('musicgen_generation_seconds_count', model='$M') == 20
     and v('musicgen_requests_total', status='200') == 20"
check "no worker crashed" sh -c "! grep -q 'exited on signal' '$TMP/logs/error.log'"
echo "nginx_metrics: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
