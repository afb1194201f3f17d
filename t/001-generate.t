# The HTTP contract of the musicgen location: both request forms, raw audio,
# CORS, and every error status this slice implements.
use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: POST JSON prompt returns the reference JSON with a WAV data URL
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "calm piano with soft drums", "duration": 1, "seed": 7}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":true,"audioUrl":"data:audio/wav;base64,UklGR[A-Za-z0-9+/=]+","audio_base64":"UklGR.*"prompt":"calm piano with soft drums".*"sample_rate":32000,"channels":1,.*"format":"wav","seed":7,
--- no_error_log
[error]

=== TEST 2: the analysis form becomes a prompt, returned in the response
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"mood": "joyful", "energy": 8, "genres": ["electronic"], "tempo_bpm": 120, "styleLevel": 7, "vocalType": "instrumental", "duration": 1, "seed": 1}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: "prompt":"modern electronic, uplifting cheerful, [^"]*","prompt_from_analysis":true

=== TEST 3: GET with query parameters returns raw audio
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=rock+guitar&duration=1&seed=5
--- error_code: 200
--- response_headers
Content-Type: audio/wav
Content-Length: 64044
--- response_body_like: ^RIFF

=== TEST 4: Accept: audio/* on POST returns raw audio in the requested format
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "jazz", "duration": 1, "seed": 2, "format": "flac"}
--- more_headers
Content-Type: application/json
Accept: audio/*
--- error_code: 200
--- response_headers
Content-Type: audio/flac
--- response_body_like: ^fLaC

=== TEST 5: empty prompt is a 400 naming the field
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "   ", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"[^"]+","field":"prompt"\}$

=== TEST 6: out-of-range duration is a 400 naming duration
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_max_duration 5; musicgen_default_duration 2; }
--- request
POST /generate
{"prompt": "pop", "duration": 6}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: "field":"duration"

=== TEST 7: a body that is not JSON is a 400
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "pop",
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"[^"]+"\}$

=== TEST 8: other content types are a 415
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
prompt=pop
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 415
--- response_body_like: "success":false

=== TEST 9: other methods are a 405 with Allow
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
DELETE /generate
--- error_code: 405
--- response_headers
Allow: GET, HEAD, POST, OPTIONS
--- response_body_like: "success":false

=== TEST 10: CORS preflight is a 204 with the allowed methods and headers
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins *; }
--- request
OPTIONS /generate
--- more_headers
Origin: https://app.example
Access-Control-Request-Method: POST
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: *
Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS
Access-Control-Expose-Headers: Content-Range, Accept-Ranges, ETag, Retry-After, X-Musicgen-Prompt-Seconds, X-Musicgen-Prompt-Trimmed-Seconds
Access-Control-Max-Age: 86400
--- response_body eval
""

=== TEST 11: an origin on the allow-list is echoed, with Vary: Origin, on errors too
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins https://a.example https://b.example; }
--- request
POST /generate
{"prompt": ""}
--- more_headers
Content-Type: application/json
Origin: https://b.example
--- error_code: 400
--- response_headers
Access-Control-Allow-Origin: https://b.example
Access-Control-Expose-Headers: Content-Range, Accept-Ranges, ETag, Retry-After, X-Musicgen-Prompt-Seconds, X-Musicgen-Prompt-Trimmed-Seconds
Vary: Origin

=== TEST 12: an origin not on the list gets no Allow-Origin header
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins https://a.example; }
--- request
GET /generate?prompt=x&duration=1&seed=1
--- more_headers
Origin: https://evil.example
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin
!Access-Control-Expose-Headers
Vary: Origin

=== TEST 13: a seeded GET is cacheable under a strong ETag
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=ambient+pads&duration=1&seed=11
--- error_code: 200
--- response_headers_like
ETag: ^"mg-[0-9a-f]{16}"$
Cache-Control: ^public, max-age=31536000, immutable$

=== TEST 14: If-None-Match on a seeded GET is a 304 without generating
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=ambient+pads&duration=1&seed=11
--- more_headers
If-None-Match: *
--- error_code: 304
--- response_headers_like
ETag: ^"mg-[0-9a-f]{16}"$
--- no_error_log
musicgen: request

=== TEST 15: a stale ETag gets the audio again
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=ambient+pads&duration=1&seed=11
--- more_headers
If-None-Match: "mg-0000000000000000"
--- error_code: 200
--- response_body_like: ^RIFF

=== TEST 16: without a seed the audio is not cacheable
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=ambient+pads&duration=1
--- error_code: 200
--- response_headers
Cache-Control: no-store
!ETag

=== TEST 17: musicgen_status reports the model, queue and totals
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /status { musicgen_status; }
--- request
GET /status
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_body_like: ^\{"model":"[^"]+demo-model","device":"cpu","loaded":true,"running":0,"queue_depth":0,"totals":\{"completed":0,

=== TEST 18: a client that goes away cancels its generation (logged, 499); 900 s (long-form) keeps the demo model busy well past the abort
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_max_duration 900; }
--- request
GET /generate?prompt=long+ambient&duration=900&seed=3
--- timeout: 0.2
--- abort
--- wait: 1
--- ignore_response
--- error_log
musicgen: client closed the connection, cancelling
--- no_error_log
[alert]

=== TEST 19: the JSON's data URL decodes to a 16-bit mono 32 kHz WAV of exactly the requested length
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "data url", "duration": 2, "seed": 8}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like eval
# the 44-byte header of 2 s of 16-bit mono PCM at 32 kHz is fixed, and base64
# maps every 3 bytes to 4 characters: its first 42 bytes are the first 56
# characters, and 128044 bytes (3 * 42681 + 1) are 42682 groups of 4, the
# last one "xx==" (perl caps a quantifier at 65534, so count groups)
use MIME::Base64 ();
my $data = 2 * 32000 * 2;
my $hdr = "RIFF" . pack("V", 36 + $data) . "WAVEfmt " . pack("VvvVVvv", 16, 1, 1, 32000, 64000, 2, 16)
        . "data" . pack("V", $data);
my $b64 = substr(MIME::Base64::encode_base64($hdr, ''), 0, 56);
qr{"audioUrl":"data:audio/wav;base64,\Q$b64\E(?:[A-Za-z0-9+/]{4}){42667}[A-Za-z0-9+/]{2}==","audio_base64":"\Q$b64\E(?:[A-Za-z0-9+/]{4}){42667}[A-Za-z0-9+/]{2}==",.*"duration":2(?:\.0)?,.*"size_bytes":128044,}s
