# The $musicgen_* variables in the access log (log_format), one block per way
# a request ends: generated (seeded and not), refused, timed out, cancelled
# by the client, and a location that is not the module's; and
# musicgen_metrics counting what this nginx did.
use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# each variable after its name: a missing one shows as "-"
our $HttpConfig = <<'_EOC_';
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
log_format musicgen '$status model=$musicgen_model result=$musicgen_result '
                    'seconds=$musicgen_seconds compute=$musicgen_compute_time '
                    'queue=$musicgen_queue_time first_audio=$musicgen_first_audio_time '
                    'seed=$musicgen_seed prompt=$musicgen_prompt_hash';
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a seeded generation: every variable, the prompt's CRC32 (of "calm piano") and the times in order
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; access_log logs/access.log musicgen; }
--- request
GET /generate?prompt=calm+piano&duration=1&seed=7
--- error_code: 200
--- ignore_response
--- access_log eval
qr{^200 model=demo-model result=ok seconds=1\.00 compute=(\d+\.\d{3}) queue=(\d+\.\d{3}) first_audio=(\d+\.\d{3}) seed=7 prompt=28511cb4$(?(?{ $2 <= $3 && $3 <= $1 })|(*FAIL))}

=== TEST 2: without a seed: the seed drawn is logged (digits), JSON answers log the same way
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; access_log logs/access.log musicgen; }
--- request
POST /generate
{"prompt": "drums", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- access_log eval
qr{^200 model=demo-model result=ok seconds=1\.00 compute=\d+\.\d{3} queue=\d+\.\d{3} first_audio=\d+\.\d{3} seed=\d+ prompt=20c3d150$}

=== TEST 3: a request refused before generating: rejected, no times, no prompt (it did not parse)
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; access_log logs/access.log musicgen; }
--- request
GET /generate?prompt=&duration=1
--- error_code: 400
--- access_log
400 model=demo-model result=rejected seconds=- compute=- queue=- first_audio=- seed=- prompt=-

=== TEST 4: past musicgen_timeout: timeout, with the request's seed and prompt but no times
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; musicgen_max_duration 900; musicgen_timeout 200ms; musicgen_stream off; access_log logs/access.log musicgen; }
--- request
GET /generate?prompt=long&duration=900&seed=3
--- error_code: 504
--- access_log
504 model=demo-model result=timeout seconds=- compute=- queue=- first_audio=- seed=3 prompt=3b97a968

=== TEST 5: a client that goes away: cancelled, $status being the stream's 200 once its header went out (499 before: a slow build may not get there)
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; musicgen_max_duration 900; access_log logs/access.log musicgen; }
--- request
GET /generate?prompt=long&duration=900&seed=4
--- timeout: 0.2
--- abort
--- wait: 1
--- ignore_response
--- access_log eval
qr{^(?:200|499) model=demo-model result=cancelled seconds=- compute=- queue=- first_audio=- seed=4 prompt=3b97a968$}

=== TEST 6: not a musicgen location: every variable is "-"
--- http_config eval: $::HttpConfig
--- config
location /other { access_log logs/access.log musicgen; return 200 "other\n"; }
--- request
GET /other
--- response_body
other
--- access_log
200 model=- result=- seconds=- compute=- queue=- first_audio=- seed=- prompt=-

=== TEST 7: musicgen_metrics after a generation and a refusal: Prometheus' text format with the counts
--- http_config eval: $::HttpConfig
--- config
location /generate { musicgen on; }
location /metrics { musicgen_metrics; }
--- request eval
["GET /generate?prompt=calm+piano&duration=1&seed=7", "GET /generate?prompt=&duration=1", "GET /metrics"]
--- error_code eval
[200, 400, 200]
--- response_headers eval
["", "", "Content-Type: text/plain; version=0.0.4; charset=utf-8"]
--- response_body_like eval
[".", ".",
qr{# TYPE musicgen_requests_total counter\nmusicgen_requests_total\{status="200"\} 1\nmusicgen_requests_total\{status="400"\} 1\n.*musicgen_generations_total\{model="demo-model",result="completed"\} 1\n.*musicgen_audio_seconds_total\{model="demo-model"\} 1\.000000\n.*musicgen_first_audio_seconds_count\{model="demo-model"\} 1\n.*musicgen_model_loaded\{model="demo-model",device="cpu",weights="f32"\} 1\n}s]
