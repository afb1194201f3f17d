# Concurrency in a running nginx: a full queue answers 503 with Retry-After
# while the running job completes, musicgen_timeout answers 504, and
# `nginx -s reload` (SIGHUP to the master) while a job runs loses no response.
#
# Each block's own request is the long job; the `--- init` code forks a
# client that waits (polling musicgen_status) until that job runs, then does
# its part (a second request, or a reload) and writes what it saw into
# html/, which a later request of the same block reads back. So the checks
# hold under the stock Test::Nginx too, where nginx restarts per block.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# One HTTP/1.0 request on loopback (a GET unless $method says otherwise);
# returns the whole response (headers and body).
sub http_get {
    my ($path, $method) = @_;
    $method //= 'GET';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 5) or return '';
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    return $resp;
}

# Forks a client that waits until a generation is running, then calls $then
# and writes its result to html/$file. The child never runs the harness's
# END blocks (they would stop nginx).
sub when_running {
    my ($file, $then) = @_;
    my $out = html_dir() . "/$file";
    unlink $out;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return if $pid;
    my $result = "never saw the job running\n";
    for (1 .. 500) {
        if (http_get('/status') =~ /"running":1/) {
            $result = $then->();
            last;
        }
        Time::HiRes::sleep(0.01);
    }
    if (open my $fh, '>', "$out.tmp") {
        print $fh $result;
        close $fh;
        rename "$out.tmp", $out;
    }
    POSIX::_exit(0);
}

sub master_pid {
    open my $fh, '<', server_root() . '/logs/nginx.pid' or return 0;
    my $pid = <$fh>;
    chomp $pid;
    return $pid;
}

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: with musicgen_batch 1 and musicgen_queue 0 a second job gets 503 + Retry-After; the running one completes
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_batch 1;
musicgen_queue 0;
--- config
location /generate { musicgen on; musicgen_max_duration 40; }
location /status { musicgen_status; }
--- init
main::when_running('second.txt', sub { main::http_get('/generate?prompt=second&duration=1&seed=2') });
--- timeout: 30
--- request eval
["GET /generate?prompt=long&duration=40&seed=1",
 "GET /second.txt",
 "GET /status"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["Content-Type: audio/wav\nContent-Length: 2560044", "", ""]
--- response_body_like eval
["^RIFF",
 qr{^HTTP/1\.1 503 [^\r]*\r\n(?:[^\r]+\r\n)*?Retry-After: \d+\r\n[\s\S]*\{"success":false,"error":"[^"]+"}s,
 qr{"running":0,"queue_depth":0,"totals":\{"completed":1,"failed":0,"rejected":1,}]
--- no_error_log
[alert]
[crit]

=== TEST 1b: while the queue is full a HEAD is still answered: it takes no place and generates nothing
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_batch 1;
musicgen_queue 0;
--- config
location /generate { musicgen on; musicgen_max_duration 40; }
location /status { musicgen_status; }
--- init
main::when_running('head.txt', sub {
    main::http_get('/generate?prompt=second&duration=1&seed=2', 'HEAD') . "---\n" . main::http_get('/status')
});
--- timeout: 30
--- request eval
["GET /generate?prompt=long&duration=40&seed=1",
 "GET /head.txt"]
--- error_code eval
[200, 200]
--- response_body_like eval
["^RIFF",
 qr{^HTTP/1\.1 200 OK\r\n.*Content-Length: 64044\r\n.*\n---\n.*"running":1,"queue_depth":0,"totals":\{"completed":0,"failed":0,"rejected":0,}s]
--- no_error_log
queue full
[alert]
[crit]

=== TEST 2: the freed slot serves the next job
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_batch 1;
musicgen_queue 0;
--- config
location /generate { musicgen on; }
--- request eval
["GET /generate?prompt=one&duration=1&seed=1",
 "GET /generate?prompt=two&duration=1&seed=2"]
--- error_code eval
[200, 200]

=== TEST 2b: with musicgen_batch 2 a second job joins the running one and finishes while it still runs
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_batch 2;
musicgen_queue 0;
--- config
location /generate { musicgen on; musicgen_max_duration 40; }
location /status { musicgen_status; }
--- init
main::when_running('second.txt', sub {
    my $r = main::http_get('/generate?prompt=second&duration=1&seed=2');
    my $st = main::http_get('/status');
    "$r\n---\n$st";
});
--- timeout: 30
--- request eval
["GET /generate?prompt=long&duration=40&seed=1",
 "GET /second.txt",
 "GET /status"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["Content-Length: 2560044", "", ""]
--- response_body_like eval
["^RIFF",
 qr{^HTTP/1\.1 200 OK\r\n.*Content-Length: 64044\r\n.*\n---\n.*"running":1,"queue_depth":0,"totals":\{"completed":1,}s,
 qr{"running":0,"queue_depth":0,"totals":\{"completed":2,"failed":0,"rejected":0,}]

=== TEST 3: a job past musicgen_timeout ends with 504 JSON (logged)
Collected (musicgen_stream off), so no header goes out before the end: a
stream whose headers went out before the timeout ends short instead.
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_max_duration 40; musicgen_timeout 200ms; musicgen_stream off; }
--- request
GET /generate?prompt=long&duration=40&seed=4
--- timeout: 30
--- error_code: 504
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"success":false,"error":"generation took longer than musicgen_timeout"\}$
--- error_log
generation timed out

=== TEST 4: after a timeout the worker is free for the next job
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_max_duration 40; musicgen_timeout 200ms; musicgen_stream off; }
location /status { musicgen_status; }
--- request eval
["GET /generate?prompt=long&duration=40&seed=4",
 "GET /generate?prompt=quick&duration=1&seed=5",
 "GET /status"]
--- timeout: 30
--- error_code eval
[504, 200, 200]
--- response_body_like eval
["musicgen_timeout", "^RIFF",
 '"totals":\{"completed":1,"failed":0,"rejected":0,"timed_out":1,']

=== TEST 5: nginx -s reload while a job runs: the old worker answers it in full, the new one serves
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; musicgen_max_duration 40; }
location /status { musicgen_status; }
--- init
main::when_running('reload.txt', sub { kill('HUP', main::master_pid()) ? "reloaded\n" : "kill failed: $!\n" });
--- timeout: 30
--- request eval
["GET /generate?prompt=reload&duration=40&seed=6",
 "GET /reload.txt",
 "GET /generate?prompt=after&duration=1&seed=7"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["Content-Length: 2560044", "", "Content-Length: 64044"]
--- response_body_like eval
["^RIFF", "^reloaded\$", "^RIFF"]
--- no_error_log
exited on signal
[alert]
