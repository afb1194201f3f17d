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
# the maximum past the model's window (the demo model's: max_length 1500
# frames at 50 Hz, 30 s) is generated window by window, up to the engine's
# cap of an hour
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
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_extend_stride 30;" "\"musicgen_extend_stride\" must be shorter than the model's window (30.00 s)"
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_stream sometimes;" "invalid value"
expect_ok   "musicgen_model $MODEL; musicgen_thread_pool default;" "musicgen on;"
check_warning() {
    if grep -q -- "$1" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - warned: $1"
    else failed=$((failed + 1)); echo "FAIL - no warning '$1':"; sed 's/^/    | /' "$TMP/out"; fi
}
check_warning "\"musicgen_thread_pool\" is deprecated and ignored: generations run on the engine's scheduler thread, so there is no pool to size"
check_no_warning() {
    if ! grep -q -- "$1" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - no warning: $1"
    else failed=$((failed + 1)); echo "FAIL - warned '$1':"; sed 's/^/    | /' "$TMP/out"; fi
}
# a state page (it names the model's folder) open to anyone is a warning;
# allow/deny in the location or inherited from the server silences it
expect_ok   "musicgen_model $MODEL;" "musicgen on; } location = /st { musicgen_status;"
check_warning "\"musicgen_status\" in location \"/st\" has no \"allow\" or \"deny\": anyone who reaches the server can read it"
expect_ok   "musicgen_model $MODEL;" "musicgen on; } location = /st { musicgen_status; allow 127.0.0.1; deny all;"
check_no_warning "has no \"allow\" or \"deny\""
expect_ok   "musicgen_model $MODEL;" "musicgen on; } location = /st { musicgen_status; } deny all; location /x {"
check_no_warning "has no \"allow\" or \"deny\""
expect_ok   "musicgen_model $MODEL;" "musicgen on; } location = /openapi.json { musicgen_openapi;"
expect_fail "musicgen_model $MODEL;" "musicgen on; } location = /o { musicgen_status; musicgen_openapi;" "\"musicgen_openapi\" directive is duplicate, or the location already has a content handler"
expect_fail "musicgen_model $MODEL;" "musicgen on; } location = /o { musicgen_openapi x;" "invalid number of arguments in \"musicgen_openapi\""
# every plan needs a stride of at least one frame (50 Hz: 0.02 s)
expect_fail "musicgen_model $MODEL;" "musicgen on; musicgen_extend_stride 0.005;" "musicgen_extend_stride: must be in (0, 30.00) seconds (the model's window), at least one frame"
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
# several models: named ones beside the one-argument form, a location's default
expect_ok   "musicgen_model $MODEL; musicgen_model short $TMP/short;" "musicgen on; musicgen_default_model short;"
expect_ok   "musicgen_model a $MODEL; musicgen_model b $MODEL; musicgen_default_model b;" "musicgen on; musicgen_default_model a;"
expect_fail "musicgen_model a $MODEL; musicgen_model a $TMP/short;" "musicgen on;" "musicgen_model \"a\": a model of that name is already defined"
expect_fail "musicgen_model $MODEL; musicgen_model $TMP/short;" "musicgen on;" "is duplicate"
expect_fail "musicgen_model $MODEL; musicgen_model short $TMP/short;" "musicgen on; musicgen_default_model medium;" "musicgen_default_model \"medium\": no musicgen_model has that name (there are: $(basename "$MODEL"), short)"
expect_fail "musicgen_model a $MODEL;" "musicgen on; musicgen_default_model a; musicgen_default_model a;" "is duplicate"
expect_fail "" "musicgen_default_model a;" "musicgen_default_model \"a\": no musicgen_model is defined"
expect_fail "musicgen_model 'a b' $MODEL;" "musicgen on;" "a model's name is 1 to 64 letters, digits"
expect_fail "musicgen_model a $MODEL;" "musicgen_model b $MODEL;" "\"musicgen_model\" directive is not allowed here"
expect_fail "musicgen_model a /nonexistent/model;" "musicgen on;" "config.json: No such file"
# the stride against every model's window, the one that refuses it named
expect_fail "musicgen_model $MODEL; musicgen_model short $TMP/short;" "musicgen on; musicgen_extend_stride 25;" "window (23.94 s): model \"short\""

# a sharded checkpoint (model.safetensors.index.json and its shards) passes;
# a missing shard or an index naming a file outside the folder does not
SHARDED=${GOLDEN:-../shared/golden}/../golden-next/tiny-proj-sharded
if [ -f "$SHARDED/model.safetensors.index.json" ]; then
    SHARDED=$(cd "$SHARDED" && pwd)
    mkdir -p "$TMP/sharded" "$TMP/noshard" "$TMP/outside"
    for f in config.json generation_config.json model.safetensors.index.json model-0000?-of-00003.safetensors; do
        ln -sf "$SHARDED"/$f "$TMP/sharded/"
        ln -sf "$SHARDED"/$f "$TMP/noshard/"
        ln -sf "$SHARDED"/$f "$TMP/outside/"
    done
    rm "$TMP/noshard/model-00002-of-00003.safetensors"
    rm "$TMP/outside/model.safetensors.index.json"
    sed 's#"model-00002-of-00003.safetensors"#"../model-00002-of-00003.safetensors"#' \
        "$SHARDED/model.safetensors.index.json" > "$TMP/outside/model.safetensors.index.json"
    expect_ok   "musicgen_model $TMP/sharded;" "musicgen on;"
    expect_fail "musicgen_model $TMP/noshard;" "musicgen on;" "shard 'model-00002-of-00003.safetensors' named by model.safetensors.index.json"
    expect_fail "musicgen_model $TMP/outside;" "musicgen on;" "names shard '../model-00002-of-00003.safetensors', which is not a file name inside the model folder"
else
    echo "SKIP sharded model checks: no $SHARDED"
fi

# long-form generation needs a stride of at least one frame shorter than the
# window: a window of one frame (4 positions, 4 codebooks) has none, so a
# maximum past it (the built-in 30 s) fails nginx -t instead of every long
# request; one of two frames strides by one
mkdir -p "$TMP/oneframe" "$TMP/twoframes"
ln -sf "$MODEL/model.safetensors" "$MODEL/generation_config.json" "$TMP/oneframe/"
ln -sf "$MODEL/model.safetensors" "$MODEL/generation_config.json" "$TMP/twoframes/"
sed 's/"max_position_embeddings": *2048/"max_position_embeddings": 4/' "$MODEL/config.json" > "$TMP/oneframe/config.json"
sed 's/"max_position_embeddings": *2048/"max_position_embeddings": 5/' "$MODEL/config.json" > "$TMP/twoframes/config.json"
expect_fail "musicgen_model $TMP/oneframe;" "musicgen on;" "musicgen_max_duration 30 s is past the model's window (0.02 s), and a window of 1 frame is too short for long-form generation: set musicgen_max_duration to at most 0.02"
expect_ok   "musicgen_model $TMP/oneframe;" "musicgen on; musicgen_max_duration 0.02;"
expect_ok   "musicgen_model $TMP/oneframe; musicgen_max_duration 0.02;" "musicgen on;"
expect_ok   "musicgen_model $TMP/twoframes;" "musicgen on;"

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
