#!/bin/sh
# nginx -t with the module: a bad directive or model fails with a clear
# message; the shipped conf/nginx.conf (filled in) passes.
# Usage: tests/nginx_conf.sh MODULE.so MODEL_DIR [FILLED_IN_CONF]
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0 failed=0

conf() { # $1 = http-level lines, $2 = location lines
    mkdir -p "$TMP/logs"
    cat > "$TMP/nginx.conf" <<CONF
load_module $MODULE;
error_log $TMP/logs/error.log;
pid $TMP/logs/nginx.pid;
events { worker_connections 16; }
http {
    client_body_temp_path $TMP/body;
    $1
    server { listen 127.0.0.1:1999; location /g { $2 } }
}
CONF
    "$NGINX" -t -p "$TMP" -c "$TMP/nginx.conf" > "$TMP/out" 2>&1
}

expect_ok() {
    if conf "$1" "$2"; then passed=$((passed + 1)); echo "ok   - accepted: $1 $2"
    else failed=$((failed + 1)); echo "FAIL - rejected: $1 $2"; sed 's/^/    | /' "$TMP/out"; fi
}
expect_fail() { # $3 = text the message must contain
    if conf "$1" "$2"; then failed=$((failed + 1)); echo "FAIL - accepted: $1 $2"
    elif grep -q -- "$3" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - rejected with '$3'"
    else failed=$((failed + 1)); echo "FAIL - message lacks '$3':"; sed 's/^/    | /' "$TMP/out"; fi
}

expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_format flac; musicgen_max_duration 20; musicgen_cors_origins *;"
expect_fail "musicgen_model /nonexistent/model;" "musicgen on;" "config.json: No such file"
expect_fail "" "musicgen on;" "needs \"musicgen_model DIR\""
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_format aiff;" "unknown audio format"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 0;" "\"musicgen_max_duration\" must be a positive number of seconds, not \"0\""
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 1e999;" "must be a positive number of seconds"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 5; musicgen_default_duration 10;" "musicgen_default_duration 10 s exceeds the maximum, 5 s"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_default_duration 31;" "musicgen_default_duration 31 s exceeds the maximum, 30 s"
# the maximum past the model's window (the demo model's: 2045 frames at 50 Hz,
# 40.9 s) is generated window by window, up to the engine's cap of an hour
expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 60;"
expect_ok   "musicgen_model $MODEL; musicgen_max_duration 120;" "musicgen on; musicgen_default_duration 41;"
expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 40.9; musicgen_default_duration 40.9;"
expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 3600;"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 3601;" "musicgen_max_duration 3601 s is longer than the engine generates (3600 s)"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 0.5;" "musicgen_max_duration 0.5 s is shorter than the shortest clip, 1 s"
expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_max_duration 5;"
expect_fail "musicgen_model $MODEL;" "musicgen maybe;" "invalid value"
expect_fail "musicgen_model $MODEL; musicgen_threads 1000;" "musicgen on;" "musicgen_threads"
expect_ok   "musicgen_model $MODEL; musicgen_device auto;" "musicgen on;"
if nm -D "$MODULE" 2>/dev/null | grep -q mg_backend_cuda_create; then
    # built with nvcc: cuda is a valid choice (whether a GPU is there is the worker's business)
    expect_ok "musicgen_model $MODEL; musicgen_device cuda:0;" "musicgen on;"
else
    expect_fail "musicgen_model $MODEL; musicgen_device cuda:0;" "musicgen on;" "built without the CUDA backend"
fi
expect_fail "musicgen_model $MODEL; musicgen_device cuda:x;" "musicgen on;" "expected cpu, auto, cuda or cuda:N"
expect_fail "musicgen_model $MODEL; musicgen_dtype f16;" "musicgen on;" "expected f32, bf16 or q8"
expect_ok   "musicgen_model $MODEL; musicgen_dtype q8; musicgen_weights_cache $TMP;" "musicgen on;"
expect_fail "musicgen_model $MODEL; musicgen_weights_cache /nonexistent/cache;" "musicgen on;" "not a folder"
expect_ok   "musicgen_model $MODEL; musicgen_cuda_opt_in conv_bf16 kv_bf16 select_many;" "musicgen on;"
expect_fail "musicgen_model $MODEL; musicgen_cuda_opt_in conv_bf16 fast;" "musicgen on;" "musicgen_cuda_opt_in \"fast\": unknown path (expected conv_bf16, kv_bf16 or select_many)"
expect_fail "musicgen_model $MODEL; musicgen_cuda_opt_in kv_bf16; musicgen_cuda_opt_in select_many;" "musicgen on;" "is duplicate"
expect_fail "musicgen_model $MODEL; musicgen_batch 0;" "musicgen on;" "\"musicgen_batch\" must be between 1 and 64"
expect_fail "musicgen_model $MODEL; musicgen_device cpu; musicgen_device auto;" "musicgen on;" "is duplicate"
expect_fail "musicgen_model $MODEL; musicgen_device tpu;" "musicgen on;" "expected cpu, auto, cuda or cuda:N"
expect_fail "musicgen_model $MODEL; musicgen_queue -1;" "musicgen on;" "musicgen_queue"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_cors_origins https://*.example;" "is not"
# the output level, the long-form stride, streaming, and the retired thread pool
expect_ok   "musicgen_model $MODEL;" "musicgen on; musicgen_level clip; musicgen_extend_stride 10; musicgen_stream off;"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_level loud;" "musicgen_level"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_level off; musicgen_format flac;" "\"musicgen_level off\" (float samples) cannot go with \"musicgen_format flac\""
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_level clip; musicgen_level off;" "is duplicate"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_extend_stride 0;" "\"musicgen_extend_stride\" must be a positive number of seconds, not \"0\""
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_extend_stride 41;" "\"musicgen_extend_stride\" must be shorter than the model's window (40.90 s)"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_stream sometimes;" "invalid value"
expect_ok   "musicgen_model $MODEL; musicgen_thread_pool default;" "musicgen on;"
check_warning() {
    if grep -q -- "$1" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - warned: $1"
    else failed=$((failed + 1)); echo "FAIL - no warning '$1':"; sed 's/^/    | /' "$TMP/out"; fi
}
check_warning "\"musicgen_thread_pool\" is deprecated and ignored"
printf '{"text_encoder": {}}' > "$TMP/config.json"; mkdir -p "$TMP/badmodel"; cp "$TMP/config.json" "$TMP/badmodel/"
expect_fail "musicgen_model $TMP/badmodel;" "musicgen on;" "text_encoder.vocab_size is missing"
mkdir -p "$TMP/trunc"; cp "$MODEL/config.json" "$TMP/trunc/"; head -c 1000 "$MODEL/model.safetensors" > "$TMP/trunc/model.safetensors"
expect_fail "musicgen_model $TMP/trunc;" "musicgen on;" "model.safetensors"
# a model whose window (1200 positions: 23.94 s) is shorter than the built-in
# maximum of 30 s: unset, the maximum is still 30 s (long-form past the window)
mkdir -p "$TMP/short"; ln -sf "$MODEL/model.safetensors" "$MODEL/generation_config.json" "$TMP/short/"
sed 's/"max_position_embeddings": *2048/"max_position_embeddings": 1200/' "$MODEL/config.json" > "$TMP/short/config.json"
expect_ok   "musicgen_model $TMP/short;" "musicgen on;"
expect_ok   "musicgen_model $TMP/short;" "musicgen on; musicgen_default_duration 30;"
expect_fail "musicgen_model $TMP/short;" "musicgen on; musicgen_default_duration 31;" "musicgen_default_duration 31 s exceeds the maximum, 30 s"
expect_ok   "musicgen_model $TMP/short;" "musicgen on; musicgen_max_duration 23.95;"

# musicgen_metrics: with a model or without one (the zone is made either way),
# no arguments; every $musicgen_* variable is known to log_format
expect_ok   "musicgen_model $MODEL;" "musicgen_metrics;"
expect_ok   "" "musicgen_metrics;"
expect_fail "" "musicgen_metrics on;" 'invalid number of arguments in "musicgen_metrics"'
expect_ok   "musicgen_model $MODEL; log_format mg '\$musicgen_prompt_hash \$musicgen_seconds \$musicgen_compute_time \$musicgen_queue_time \$musicgen_first_audio_time \$musicgen_seed \$musicgen_model \$musicgen_result'; access_log $TMP/logs/a.log mg;" "musicgen on;"
if [ -n "${3:-}" ]; then
    if "$NGINX" -t -p "$(dirname "$3")" -c "$3" > "$TMP/out" 2>&1; then
        passed=$((passed + 1)); echo "ok   - conf/nginx.conf passes nginx -t"
    else
        failed=$((failed + 1)); echo "FAIL - conf/nginx.conf:"; sed 's/^/    | /' "$TMP/out"
    fi
fi
echo "nginx_conf: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
