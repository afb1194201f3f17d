# Hostile and malformed input: a chunked body past client_max_body_size,
# deeply nested JSON, a 1 MB string, invalid UTF-8 and NUL bytes in the query
# string, huge, negative and NaN numbers there, a client trickling its body
# (and one that stops), many preflights at once, origins near the allow-list,
# no filesystem path in any error body, musicgen_status behind allow/deny.
# Each is answered by a status (never a crash) before any generation starts.
# (t/002 has the JSON-body forms of most field errors.)
use Test::Nginx::Socket 'no_plan';
use File::Copy ();
use File::Temp ();
use IO::Socket::INET;

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# The demo model with a corrupt spiece.model: it passes nginx -t (config and
# safetensors header) and fails to load in the worker.
my $broken = File::Temp::tempdir(CLEANUP => 1);
chmod 0755, $broken;
for my $f (qw(config.json generation_config.json model.safetensors)) {
    File::Copy::copy("$ENV{TEST_NGINX_MUSICGEN_MODEL}/$f", "$broken/$f") or die "copy $f: $!";
}
open my $fh, '>', "$broken/spiece.model" or die;
print $fh "\x0a\xff\xff\xff\xff\x0f" x 100;
close $fh;
$ENV{TEST_NGINX_BROKEN_MODEL} = $broken;

# n OPTIONS requests on n connections open at the same time; returns
# "STATUS xCOUNT" per distinct status line, sorted.
sub parallel_preflights {
    my ($n) = @_;
    my @socks;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                      Proto => 'tcp', Timeout => 5) or last;
        push @socks, $s;
    }
    print $_ "OPTIONS /generate HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n"
        . "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n" for @socks;
    my %seen;
    for my $s (@socks) {
        local $/;
        my $resp = <$s> // '';
        my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
        my $cors = $resp =~ m{\r\nAccess-Control-Allow-Origin: https://app\.example\r\n} ? '+cors' : '';
        $seen{($status // 'none') . $cors}++;
        close $s;
    }
    return join(' ', map { "$_ x$seen{$_}" } sort keys %seen) . "\n";
}

sub write_html {
    my ($file, $text) = @_;
    open my $out, '>', html_dir() . "/$file" or die "$file: $!";
    print $out $text;
    close $out;
}

no_shuffle();
no_long_string();
run_tests();

__DATA__

=== TEST 1: a chunked body past client_max_body_size is a 413 and no job
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_max_body_size 100; }
--- raw_request eval
"POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
. "c8\r\n" . ("a" x 200) . "\r\n0\r\n\r\n"
--- error_code: 413
--- no_error_log
musicgen: request

=== TEST 2: JSON nested 100000 deep is a 400 without a field, not a stack overflow
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_max_body_size 1m; }
--- request eval
"POST /generate\n{\"prompt\": " . ("[" x 100000) . ("]" x 100000) . "}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"request body is not valid JSON: [^"]*"\}$
--- no_error_log
musicgen: request
[alert]

=== TEST 3: a 1 MB prompt is a 400 naming prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_max_body_size 2m; }
--- request eval
"POST /generate\n{\"prompt\": \"" . ("x" x 1048576) . "\", \"duration\": 1}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"prompt: [^"]*at most 500[^"]*","field":"prompt"\}$
--- no_error_log
musicgen: request

=== TEST 4: a 1 MB string in an ignored front-end key is still bounded by client_max_body_size
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_max_body_size 64k; }
--- request eval
"POST /generate\n{\"prompt\": \"calm\", \"description\": \"" . ("y" x 1048576) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 413
--- no_error_log
musicgen: request

=== TEST 5: invalid UTF-8 in the query string (percent-encoded and raw) is a 400 naming prompt
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request eval
["GET /generate?prompt=caf%C3%28&duration=1",
 "GET /generate?prompt=%ff%fe%fd&duration=1",
 "GET /generate?prompt=\xc3\x28x&duration=1",
 "GET /generate?prompt=%ED%A0%80&duration=1"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[qr/"field":"prompt"\}$/, qr/"field":"prompt"\}$/, qr/"field":"prompt"\}$/, qr/"field":"prompt"\}$/]
--- no_error_log
musicgen: request

=== TEST 6: NUL bytes: %00 in the query, a raw NUL in the JSON body
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request eval
["GET /generate?prompt=calm%00piano&duration=1",
 "POST /generate\n{\"prompt\": \"calm\0piano\", \"duration\": 1}"]
--- more_headers eval
["", "Content-Type: application/json"]
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/^\{"success":false,"error":"[^"]+","field":"prompt"\}$/,
 qr/^\{"success":false,"error":"request body is not valid JSON(?:[^"\\]|\\.)*"\}$/]
--- no_error_log
musicgen: request

=== TEST 7: huge, negative, NaN and infinite numbers in the query string are 400s naming the field
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request eval
["GET /generate?prompt=a&duration=1e999",
 "GET /generate?prompt=a&duration=-5",
 "GET /generate?prompt=a&duration=nan",
 "GET /generate?prompt=a&duration=NaN",
 "GET /generate?prompt=a&duration=-inf",
 "GET /generate?prompt=a&duration=-0",
 "GET /generate?prompt=a&seed=1e300",
 "GET /generate?prompt=a&top_k=99999999999999999999999",
 "GET /generate?prompt=a&temperature=0x10"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[qr/"field":"duration"\}$/, qr/"field":"duration"\}$/, qr/"field":"duration"\}$/,
 qr/"field":"duration"\}$/, qr/"field":"duration"\}$/, qr/"field":"duration"\}$/,
 qr/"field":"seed"\}$/, qr/"field":"top_k"\}$/, qr/"field":"temperature"\}$/]
--- no_error_log
musicgen: request

=== TEST 8: a client trickling its body in pieces still gets its generation
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- raw_request eval
["POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 52\r\nConnection: close\r\n\r\n",
 "{\"prompt\": ", "\"slow piano\", ", "\"duration\": 1, ", "\"seed\": 4}  "]
--- raw_request_middle_delay: 0.2
--- timeout: 10
--- error_code: 200
--- response_body_like: ^\{"success":true,"audioUrl":"data:audio/wav;base64,
--- error_log
musicgen: request

=== TEST 9: a client that stops sending its body is cut off at client_body_timeout and starts no job
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; client_body_timeout 300ms; }
--- raw_request eval
"POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": \"never"
--- timeout: 2
--- abort
--- ignore_response
--- wait: 0.5
--- no_error_log
musicgen: request
[alert]

=== TEST 10: 48 preflights at once all get their 204 with the allowed origin
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins https://app.example; }
--- init
main::write_html('preflights.txt', main::parallel_preflights(48));
--- request
GET /preflights.txt
--- response_body
204+cors x48
--- no_error_log
[alert]
[crit]

=== TEST 11: origins near the allow-list are never reflected
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins https://app.example; }
--- request eval
["OPTIONS /generate", "OPTIONS /generate", "OPTIONS /generate", "OPTIONS /generate",
 "OPTIONS /generate", "OPTIONS /generate", "GET /generate?prompt=a&duration=0"]
--- more_headers eval
["Origin: https://app.example.evil.com", "Origin: https://evil.app.example",
 "Origin: null", "Origin: https://app.example:8443", "Origin: http://app.example",
 "Origin: https://app.exampl", "Origin: https://app.example.attacker.net"]
--- error_code eval
[204, 204, 204, 204, 204, 204, 400]
--- response_headers eval
["!Access-Control-Allow-Origin\nVary: Origin", "!Access-Control-Allow-Origin\nVary: Origin",
 "!Access-Control-Allow-Origin\nVary: Origin", "!Access-Control-Allow-Origin\nVary: Origin",
 "!Access-Control-Allow-Origin\nVary: Origin", "!Access-Control-Allow-Origin\nVary: Origin",
 "!Access-Control-Allow-Origin\nVary: Origin"]

=== TEST 12: an origin on the list in another case gets the configured spelling, not the client's bytes
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_cors_origins https://app.example; }
--- request
OPTIONS /generate
--- more_headers
Origin: HTTPS://APP.EXAMPLE
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: https://app.example

=== TEST 13: a model that could not load: the 503 body names no filesystem path (the log does)
(one request per block: the load's [emerg] line is logged once, before the
first request, and each request's error_log check reads the lines since the
previous one)
--- http_config
musicgen_model $TEST_NGINX_BROKEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
GET /generate?prompt=a&duration=1
--- error_code: 503
--- response_body_like: ^\{"success":false,"error":"[^"/]*"\}$
--- error_log eval
[qr{\[emerg\] .*musicgen: loading ".*": .*/spiece\.model: }]

=== TEST 13b: the same for a JSON POST
--- http_config
musicgen_model $TEST_NGINX_BROKEN_MODEL;
--- config
location /generate { musicgen on; }
--- request
POST /generate
{"prompt": "a", "duration": 1}
--- more_headers
Content-Type: application/json
--- error_code: 503
--- response_body_like: ^\{"success":false,"error":"[^"/]*"\}$
--- error_log eval
[qr{\[emerg\] .*musicgen: loading ".*": .*/spiece\.model: }]

=== TEST 14: error bodies quote only what the client sent, never a server path; a success names the model by its folder name only
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
--- request eval
["GET /generate?prompt=a&format=../../etc/passwd",
 "POST /generate\n{\"prompt\": \"a\", \"volume\": 1}",
 "POST /generate\n{\"prompt\": \"calm\", \"duration\": 1, \"seed\": 1}"]
--- more_headers eval
["", "Content-Type: application/json", "Content-Type: application/json"]
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr{^\{"success":false,"error":"format: (?:[^"\\]|\\.)*","field":"format"\}$},
 qr{^\{"success":false,"error":"[^"/]*","field":"volume"\}$},
 qr{"model":"demo-model"\}$}]

=== TEST 15: musicgen_status behind deny all is a 403
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /status { musicgen_status; deny all; }
--- request
GET /status
--- error_code: 403
--- response_body_unlike: "model"

=== TEST 16: musicgen_status with allow 127.0.0.1; deny all answers loopback
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /status { musicgen_status; allow 127.0.0.1; allow ::1; deny all; }
--- request
GET /status
--- error_code: 200
--- response_body_like: ^\{"model":
