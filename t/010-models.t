# Several models in one nginx: two tiny random models (the demo model and a
# second one with other weights and a 5 s window) declared with
# musicgen_model NAME DIR, a request's "model" choosing one, a location
# defaulting to the second (musicgen_default_model), an unknown name's 400,
# musicgen_status listing both, and both models generating at once.
#
# The concurrent block forks a client from `--- init` (as t/003-load.t) that
# waits until the first model runs a long job, then asks the second model,
# and writes what it saw into html/, which the block's next request reads.
use Test::Nginx::Socket 'no_plan';
use File::Basename ();
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});
$ENV{TEST_NGINX_MUSICGEN_MODEL2} ||= 'build/demo-model-short';
$ENV{TEST_NGINX_MUSICGEN_MODEL2} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL2});
# the one-argument musicgen_model's name: its folder's
our $unnamed = File::Basename::basename($ENV{TEST_NGINX_MUSICGEN_MODEL});

# A model that passes nginx -t and fails to load in the worker: the demo
# model's files linked, beside a spiece.model that is not one.
my $broken = File::Temp::tempdir(CLEANUP => 1);
chmod 0755, $broken;
symlink("$ENV{TEST_NGINX_MUSICGEN_MODEL}/$_", "$broken/$_") or die "link $_: $!"
    for qw(config.json generation_config.json model.safetensors);
open my $sp, '>', "$broken/spiece.model" or die "spiece.model: $!";
print $sp "not a sentencepiece model\n";
close $sp;
$ENV{TEST_NGINX_BROKEN_MODEL} = $broken;

# One HTTP/1.0 request on loopback; returns the whole response.
sub http_get {
    my ($path, $method) = @_;
    $method //= 'GET';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 10) or return '';
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    return $resp;
}

sub etag { my ($resp) = @_; return $resp =~ /^ETag: (\S+)\r$/mi ? $1 : 'none'; }

# Whether musicgen_status says the model named $name runs a job now.
sub running { my ($status, $name) = @_; return $status =~ /"name":"\Q$name\E"[^}]*"running":1/; }

# Forks a client that waits until model $name runs a job, then calls $then
# and writes its result to html/$file. The child never runs the harness's
# END blocks (they would stop nginx).
sub when_running {
    my ($name, $file, $then) = @_;
    my $out = html_dir() . "/$file";
    unlink $out;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return if $pid;
    my $result = "never saw model $name running\n";
    for (1 .. 1000) {
        if (running(http_get('/status'), $name)) {
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

# While model "tiny" generates a long clip: the second model answers a
# request of its own, and the ETags of one URL's worth of audio on each.
sub second_model_meanwhile {
    my $short = http_get('/short?prompt=b&duration=2&seed=2');
    my $status = http_get('/status');
    my $same = http_get('/generate?prompt=b&duration=2&seed=2&model=short', 'HEAD');
    my $other = http_get('/generate?prompt=b&duration=2&seed=2', 'HEAD');
    my ($line) = $short =~ /^(HTTP\S* \d+)/;
    return join '', "short: ", $line // 'no answer', ", ", length($short) > 64044 ? "audio" : "no audio", "\n",
        "tiny still running then: ", (running($status, 'tiny') ? 'yes' : 'no'), "\n",
        "ETag of /short = with model=short: ", (etag($short) eq etag($same) ? 'yes' : 'no'), "\n",
        "ETag with model=tiny differs: ", (etag($other) ne etag($short) && etag($other) ne 'none' ? 'yes' : 'no'), "\n";
}

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: musicgen_status lists every model: name, folder, load state, device, weights format
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
--- config
location /generate { musicgen on; }
location /status { musicgen_status; }
--- request
GET /status
--- error_code: 200
--- response_body_like eval
qr{"models":\[\{"name":"tiny","folder":"\Q$ENV{TEST_NGINX_MUSICGEN_MODEL}\E","loaded":true,"device":"cpu","weights":"f32","running":0,"queue_depth":0\},\{"name":"short","folder":"\Q$ENV{TEST_NGINX_MUSICGEN_MODEL2}\E","loaded":true,"device":"cpu","weights":"f32","running":0,"queue_depth":0\}\]\}$}
--- no_error_log
[error]

=== TEST 2: both models answer one nginx, each as the request names it; the JSON names the model
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
--- config
location /generate { musicgen on; }
--- more_headers
Content-Type: application/json
--- request eval
["POST /generate\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3}",
 "POST /generate\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3, \"model\": \"short\"}",
 "POST /generate\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3, \"model\": \"tiny\"}"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr{^\{"success":true,"audioUrl":"data:audio/wav;base64,.*"model":"tiny"\}$},
 qr{^\{"success":true,"audioUrl":"data:audio/wav;base64,.*"model":"short"\}$},
 qr{^\{"success":true,"audioUrl":"data:audio/wav;base64,.*"model":"tiny"\}$}]
--- no_error_log
[error]

=== TEST 3: an unknown model is a 400 naming "model" and listing the names, in both forms
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
--- config
location /generate { musicgen on; }
--- more_headers
Content-Type: application/json
--- request eval
["GET /generate?prompt=a&duration=1&model=medium",
 "POST /generate\n{\"prompt\": \"a\", \"model\": \"Short\"}",
 "POST /generate\n{\"prompt\": \"a\", \"model\": 2}"]
--- error_code eval
[400, 400, 400]
--- response_body eval
["{\"success\":false,\"error\":\"model: unknown model \\\"medium\\\" (this server has: tiny, short)\",\"field\":\"model\"}",
 "{\"success\":false,\"error\":\"model: unknown model \\\"Short\\\" (this server has: tiny, short)\",\"field\":\"model\"}",
 "{\"success\":false,\"error\":\"model: must be a string (the name of a model)\",\"field\":\"model\"}"]
--- no_error_log
[error]

=== TEST 4: a location defaulting to the second model; its limits are the chosen model's (a 5 s window)
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
--- config
location /generate { musicgen on; }
location /short { musicgen on; musicgen_default_model short; }
--- more_headers
Content-Type: application/json
--- request eval
["POST /short\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3}",
 "POST /short\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3, \"model\": \"tiny\"}",
 "GET /short?prompt=a&duration=6&extend_stride=10",
 "GET /generate?prompt=a&duration=6&extend_stride=10&model=short",
 "GET /short?prompt=a&duration=6&extend_stride=10&model=tiny"]
--- error_code eval
[200, 200, 400, 400, 200]
--- response_body_like eval
[qr{"model":"short"\}$},
 qr{"model":"tiny"\}$},
 qr{^\{"success":false,"error":"extend_stride: must be in \(0, 5\.00\) seconds \(the model's window\)[^"]*","field":"extend_stride"\}$},
 qr{^\{"success":false,"error":"extend_stride: must be in \(0, 5\.00\) seconds \(the model's window\)[^"]*","field":"extend_stride"\}$},
 qr{^RIFF}]
--- no_error_log
[error]

=== TEST 5: the one-argument musicgen_model beside a named one: the http level's default, named by its folder
--- http_config
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
--- config
location /generate { musicgen on; }
location /status { musicgen_status; }
--- more_headers
Content-Type: application/json
--- request eval
["POST /generate\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3}",
 "POST /generate\n{\"prompt\": \"a\", \"duration\": 1, \"seed\": 3, \"model\": \"$main::unnamed\"}",
 "GET /status"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr{"model":"\Q$main::unnamed\E"\}$},
 qr{"model":"\Q$main::unnamed\E"\}$},
 qr{^\{"model":"\Q$ENV{TEST_NGINX_MUSICGEN_MODEL}\E",.*"models":\[\{"name":"short",.*\},\{"name":"\Q$main::unnamed\E",}]
--- no_error_log
[error]

=== TEST 6: two models generate at once in one nginx: the second answers while the first runs a long job; the ETag covers the model
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model short $TEST_NGINX_MUSICGEN_MODEL2;
--- config
location /generate { musicgen on; musicgen_max_duration 40; }
location /short { musicgen on; musicgen_default_model short; }
location /status { musicgen_status; }
--- init
main::when_running('tiny', 'meanwhile.txt', \&main::second_model_meanwhile);
--- timeout: 30
--- request eval
["GET /generate?prompt=long&duration=40&seed=1",
 "GET /meanwhile.txt"]
--- error_code eval
[200, 200]
--- response_headers eval
["Content-Type: audio/wav\nContent-Length: 2560044", ""]
--- response_body_like eval
["^RIFF",
 "^short: HTTP/1.1 200, audio
tiny still running then: yes
ETag of /short = with model=short: yes
ETag with model=tiny differs: yes
\$"]
--- no_error_log
[alert]
[crit]

=== TEST 7: a model that fails to load answers 503 while the other serves; the status says which
--- http_config
musicgen_model tiny $TEST_NGINX_MUSICGEN_MODEL;
musicgen_model broken $TEST_NGINX_BROKEN_MODEL;
--- config
location /generate { musicgen on; }
location /status { musicgen_status; }
--- request eval
["GET /generate?prompt=a&duration=1&model=broken",
 "GET /generate?prompt=a&duration=1",
 "GET /status"]
--- error_code eval
[503, 200, 200]
--- response_headers eval
["Retry-After: 30", "Content-Type: audio/wav", ""]
--- response_body_like eval
[qr{^\{"success":false,"error":"the model is not loaded \(see the error log\)"\}$},
 qr{^RIFF},
 qr{"models":\[\{"name":"tiny","folder":"[^"]+","loaded":true,.*\},\{"name":"broken","folder":"[^"]+","loaded":false,"device":"auto","weights":null,"running":0,"queue_depth":0\}\]\}$}]
