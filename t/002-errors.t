# Every invalid input is a 400 JSON {"success": false, "error", "field"}
# naming the field, before any generation starts; 413 past
# client_max_body_size. (t/001 has the empty prompt, the out-of-range
# duration, a body that is not JSON, 415 and 405.)
use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# Whether the module under test has the CUDA backend compiled in.
sub module_has_cuda {
    my $so = $ENV{TEST_NGINX_LOAD_MODULES} // '';
    return `nm -D $so 2>/dev/null` =~ /\bmg_backend_cuda_create\b/;
}

no_shuffle();
run_tests();

__DATA__
=== TEST 1: a prompt of only whitespace is a 400 naming the field prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "   \t  ", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*must not be empty or blank(?:[^"\\]|\\.)*","field":"prompt"\}$
--- no_error_log
musicgen: request

=== TEST 2: a prompt over 500 characters is a 400 naming the field prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*500(?:[^"\\]|\\.)*","field":"prompt"\}$
--- no_error_log
musicgen: request

=== TEST 3: a prompt of the wrong type is a 400 naming the field prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": 42, "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*must be a string(?:[^"\\]|\\.)*","field":"prompt"\}$
--- no_error_log
musicgen: request

=== TEST 4: a duration given as a string is a 400 naming the field duration
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": "10"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*number(?:[^"\\]|\\.)*","field":"duration"\}$
--- no_error_log
musicgen: request

=== TEST 5: NaN is not a number is a 400 naming no field
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": NaN}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*not valid JSON(?:[^"\\]|\\.)*"\}$
--- no_error_log
musicgen: request

=== TEST 6: Infinity is not a number is a 400 naming no field
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "temperature": Infinity}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*not valid JSON(?:[^"\\]|\\.)*"\}$
--- no_error_log
musicgen: request

=== TEST 7: a huge number is out of range is a 400 naming the field duration
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": 1e308}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*at most(?:[^"\\]|\\.)*","field":"duration"\}$
--- no_error_log
musicgen: request

=== TEST 8: a negative duration is a 400 naming the field duration
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": -5}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*must be(?:[^"\\]|\\.)*","field":"duration"\}$
--- no_error_log
musicgen: request

=== TEST 9: temperature below 0.1 is a 400 naming the field temperature
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": 1, "temperature": 0.05}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*must be(?:[^"\\]|\\.)*","field":"temperature"\}$
--- no_error_log
musicgen: request

=== TEST 10: a fractional seed is a 400 naming the field seed
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": 1, "seed": 1.5}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*integer(?:[^"\\]|\\.)*","field":"seed"\}$
--- no_error_log
musicgen: request

=== TEST 11: an unknown format is a 400 naming the field format
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": 1, "format": "aiff"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*aiff(?:[^"\\]|\\.)*","field":"format"\}$
--- no_error_log
musicgen: request

=== TEST 12: a duplicate key is a 400 naming the field prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "prompt": "y", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*duplicate key(?:[^"\\]|\\.)*","field":"prompt"\}$
--- no_error_log
musicgen: request

=== TEST 13: an unknown key is a 400 naming the field volume
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "x", "duration": 1, "volume": 11}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*unknown field(?:[^"\\]|\\.)*","field":"volume"\}$
--- no_error_log
musicgen: request

=== TEST 14: a JSON array instead of an object is a 400 naming no field
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
["prompt", "x"]
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*must be a JSON object(?:[^"\\]|\\.)*"\}$
--- no_error_log
musicgen: request

=== TEST 15: genres that are not a list is a 400 naming the field genres
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"mood": "calm", "genres": "jazz", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*(?:[^"\\]|\\.)*","field":"genres"\}$
--- no_error_log
musicgen: request

=== TEST 16: energy out of 0..10 is a 400 naming the field energy
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"mood": "calm", "energy": 11, "genres": ["jazz"], "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"(?:[^"\\]|\\.)*at most(?:[^"\\]|\\.)*","field":"energy"\}$
--- no_error_log
musicgen: request

=== TEST 17: invalid UTF-8 in a string is a 400 naming no field (the JSON parser refuses it)
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request eval
"POST /generate\n{\"prompt\": \"caf\xc3\x28 music\", \"duration\": 1}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"request body is not valid JSON: unable to decode byte 0xc3
--- no_error_log
musicgen: request

=== TEST 18: an escaped NUL inside the prompt is a 400 naming prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "calm\u0000piano", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"prompt: must not contain control characters","field":"prompt"\}$

=== TEST 19: a query-string duration that is not a number is a 400 naming duration
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=rock&duration=ten
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"duration: must be a number \(got \\"ten\\"\)","field":"duration"\}$

=== TEST 20: a body past client_max_body_size is a 413
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_max_body_size 64; }
--- request eval
"POST /generate\n{\"prompt\": \"" . ("a" x 200) . "\", \"duration\": 1}"
--- more_headers
Content-Type: application/json
--- error_code: 413
--- no_error_log
musicgen: request

=== TEST 21: a model that could not load (musicgen_device cuda, no usable GPU) answers 503 + Retry-After
--- skip_eval: 5: !main::module_has_cuda() || -e '/dev/nvidia0'
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_device cuda;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=rock&duration=1
--- error_code: 503
--- response_headers_like
Retry-After: ^\d+$
Content-Type: ^application/json
--- response_body_like: ^\{"success":false,"error":"[^"]*model[^"]*"
--- error_log eval
[qr/\[emerg\] .*musicgen: loading .*no usable GPU/]
