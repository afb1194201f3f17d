# Self-test of the Test::Nginx::Socket stand-in in t/lib, using only stock
# nginx features (return, add_header, map, sub_filter, static files).  Runs
# unchanged under openresty's real Test::Nginx::Socket too.
use Test::Nginx::Socket;

$ENV{TEST_NGINX_GREETING} = 'hi there';

repeat_each(2);
plan tests => repeat_each() * (blocks() * 2 + 16);

no_shuffle();
no_long_string();
run_tests();

__DATA__

=== TEST 1: return with a body; default content type; clean error log
--- config
location = /hello { return 200 "hello\n"; }
--- request
GET /hello
--- error_code: 200
--- response_headers
Content-Type: text/plain
--- response_body
hello
--- no_error_log
[error]

=== TEST 2: response_headers, present and absent (error_code defaults to 200)
--- config
location = /h { add_header X-Foo bar; return 200 "ok"; }
--- request
GET /h
--- response_headers
X-Foo: bar
!X-Bar
--- response_body chomp
ok

=== TEST 3: response_headers_like and response_body_like
--- config
location = /h { add_header X-Foo bar; return 200 "ok"; }
--- request
GET /h
--- response_headers_like
X-Foo: b.r
--- response_body_like: ^ok$

=== TEST 4: error_log with an eval list of a regex and a plain string
--- config
--- request
GET /nope.html
--- error_code: 404
--- error_log eval
[qr/open\(\) "[^"]*nope\.html" failed/, "No such file or directory"]

=== TEST 5: request body is trimmed and gets a Content-Length; more_headers sent
--- config
location = /echo { return 200 "$request_method $http_x_test $content_length $content_type\n"; }
--- request
POST /echo
{"a": 1}
--- more_headers
X-Test: abc
Content-Type: application/json
--- response_body
POST abc 8 application/json

=== TEST 6: request eval
--- config
location = /arg { return 200 "x=$arg_x"; }
--- request eval
"GET /arg?x=" . (40 + 2)
--- response_body eval
"x=42"

=== TEST 7: raw_request eval with HTTP/1.0
--- config
location = /raw { return 200 "raw"; }
--- raw_request eval
"GET /raw HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_headers
!Transfer-Encoding
--- response_body chomp
raw

=== TEST 8: chunked response bodies are decoded
--- config
location = /chunked {
    sub_filter_types text/plain;
    sub_filter hello bye;
    sub_filter_once off;
    return 200 "hello hello\n";
}
--- request
GET /chunked
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
bye bye

=== TEST 9: $TEST_NGINX_* substitution in config, $ServerPort in expectations
--- config
location = /env { return 200 "$TEST_NGINX_GREETING on $TEST_NGINX_SERVER_PORT"; }
--- request
GET /env
--- response_body chomp
hi there on $ServerPort

=== TEST 10: http_config, main_config and log_level
--- main_config
worker_rlimit_nofile 1024;
--- http_config
map $uri $mapped { default "mapped-$uri"; }
--- config
location = /map { return 200 $mapped; }
--- log_level: warn
--- request
GET /map
--- response_body chomp
mapped-/map
--- no_error_log
[debug]

=== TEST 11: abort: an incomplete request times out without failing
--- config
location = /hello { return 200 "hello\n"; }
--- raw_request eval
"GET /hello HTTP/1.1\r\nHost: localhost\r\n"
--- timeout: 0.3
--- abort
--- ignore_response
--- no_error_log
[error]

=== TEST 12: HEAD gets headers only
--- config
location = /hello { return 200 "hello\n"; }
--- request
HEAD /hello
--- response_headers
Content-Length: 6
--- response_body eval
""

=== TEST 13: several requests in one block, with arrays of expectations
--- config
location = /a { return 200 "a"; }
location = /b { return 200 "b"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 200]
--- response_body eval
["a", "b"]
--- no_error_log
[error]

=== TEST 14: response_body_unlike
--- config
location = /fine { return 200 "fine"; }
--- request
GET /fine
--- response_body_unlike: error

=== TEST 15: explicit HTTP/1.0 in the request line
--- config
location = /hello { return 200 "hello\n"; }
--- request
GET /hello HTTP/1.0
--- response_body
hello

=== TEST 16: user_files are written under the html dir
--- config
--- user_files
>>> foo.txt
file contents
--- request
GET /foo.txt
--- response_body
file contents

=== TEST 17: access_log and no_access_log: the lines the request's log phase wrote
--- http_config
log_format runner '$request_method $uri $status';
--- config
location = /logged { access_log logs/access.log runner; return 200 "ok"; }
--- request
GET /logged
--- response_body chomp
ok
--- access_log
GET /logged 200
--- no_access_log
GET /logged 404
