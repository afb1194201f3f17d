# The edge tier of conf/edge.conf in one nginx: a generation node on its own
# port and, in front of it, nginx's upstream + proxy_cache keyed on the GET
# URL + limit_req answering 429. A second identical seeded GET is a cache HIT
# that never reaches the node (the node's musicgen_status counts one
# generation); unseeded GETs are never cached. tests/nginx_edge.sh runs the
# two conf/ files themselves as two nginx instances.
use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});
$ENV{TEST_NGINX_NODE_PORT} ||= 1990;

# the cache lives under the server root, which outlives a run: start empty
use File::Path ();
File::Path::remove_tree(server_root() . '/cache');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the second identical seeded GET is a HIT, unseeded ones always reach the node, past the burst 429
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
upstream musicgen_nodes {
    server 127.0.0.1:$TEST_NGINX_NODE_PORT;
    keepalive 8;
}
proxy_cache_path $TEST_NGINX_SERVER_ROOT/cache levels=1:2 keys_zone=musicgen:1m use_temp_path=off;
limit_req_zone $binary_remote_addr zone=musicgen_rate:1m rate=1r/m;
server {
    listen 127.0.0.1:$TEST_NGINX_NODE_PORT;
    location /generate { musicgen on; }
    location /status { musicgen_status; }
}
--- config
location /generate {
    limit_req zone=musicgen_rate burst=3 nodelay;
    limit_req_status 429;
    proxy_pass http://musicgen_nodes;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache musicgen;
    proxy_cache_methods GET HEAD;
    proxy_cache_key $scheme$host$request_uri;
    proxy_cache_lock on;
    add_header X-Cache-Status $upstream_cache_status always;
}
location /node-status { proxy_pass http://musicgen_nodes/status; }
--- request eval
["GET /generate?prompt=edge+test&duration=1&seed=42",
 "GET /generate?prompt=edge+test&duration=1&seed=42",
 "GET /generate?prompt=edge+nocache&duration=1",
 "GET /generate?prompt=edge+nocache&duration=1",
 "GET /generate?prompt=edge+test&duration=1&seed=42",
 "GET /node-status"]
--- error_code eval
[200, 200, 200, 200, 429, 200]
--- response_headers eval
["X-Cache-Status: MISS\nContent-Type: audio/wav\nContent-Length: 64044",
 "X-Cache-Status: HIT\nContent-Type: audio/wav\nContent-Length: 64044",
 "X-Cache-Status: MISS\nCache-Control: no-store",
 "X-Cache-Status: MISS\nCache-Control: no-store",
 "",
 ""]
--- response_body_like eval
["^RIFF", "^RIFF", "^RIFF", "^RIFF", "429",
 '"totals":\{"completed":3,"failed":0,']
--- no_error_log
[alert]
[crit]
