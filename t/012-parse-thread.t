# Large request bodies are parsed off the event loop, by the worker's parser
# thread (src/nginx/ngx_http_musicgen_parser.c): while one is parsed, the
# same (single) worker answers other requests; a client that goes away
# mid-parse ends its request and the worker goes on; a reload with a parse
# in flight answers it; a full parser queue is a 503 with Retry-After.
#
# The slow body is valid JSON whose parse alone takes long: 48 MB of an
# ignored front-end field ("description") before an audio_prompt that is no
# audio, so it ends in a 400 naming audio_prompt without generating. The
# requests run from the block's `--- init` code, which writes one line a
# check into html/ for the block's request to read back (as t/008 does).
use Test::Nginx::Socket 'no_plan';
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# The audio_prompt: "this is no audio file at all" in base64.
sub slow_body {
    return '{"prompt":"lofi beat","duration":2,"description":"' . ('a' x (48 << 20)) . '",'
           . '"audio_prompt":"dGhpcyBpcyBubyBhdWRpbyBmaWxlIGF0IGFsbA=="}';
}

# A request that generates 1 s, its body taken past 64 KiB with JSON
# whitespace: parsed by the thread too.
sub padded_body {
    return '{' . (' ' x 70000) . '"prompt":"lofi beat","duration":1,"seed":3}';
}

# Sends a request on a new connection (Connection: close) and returns the
# socket, the response not yet read: a GET, or a JSON POST when $json.
sub send_request {
    my ($path, $json) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 60) or die "connect: $!";
    if (!defined $json) {
        print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
        return $s;
    }
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             . "Content-Type: application/json\r\nContent-Length: " . length($json) . "\r\n\r\n"
             . $json;
    # print returns once the last bytes are in the kernel: nginx then has
    # all but what the socket buffers hold, and reads that at once (so a
    # parse on the event loop would have begun before what the test does
    # next)
    Time::HiRes::sleep(0.1);
    return $s;
}

# The response on $s: "STATUS", then the JSON error's field, a Retry-After,
# or a plain-text body.
sub answer {
    my ($s) = @_;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/\S+ (\d+)};
    my ($type) = $resp =~ m{^Content-Type: ([^;\r]+)}mi;
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    my $j = ($type // '') eq 'application/json' ? eval { JSON::PP::decode_json($body) } // {} : {};
    return join ' ', $status // 'no answer', $j->{field} // (),
                     $resp =~ /^Retry-After: \d+\r$/mi ? 'Retry-After' : (),
                     ($type // '') eq 'text/plain' ? $body =~ s/\n\z//r : ();
}

sub result {
    my ($file, @lines) = @_;
    open my $fh, '>', html_dir() . "/$file" or die "$file: $!";
    print $fh map { "$_\n" } @lines;
    close $fh;
}

# A small GET while the slow body is parsed: answered first.
sub answered_while_parsing {
    my ($file) = @_;
    my $slow = send_request('/generate', slow_body());
    my $ping = answer(send_request('/ping'));
    my $pending = IO::Select->new($slow)->can_read(0) ? 'answered' : 'not answered yet';
    result($file, "ping: $ping", "slow body after the ping: $pending", 'slow body: ' . answer($slow));
}

# The client goes away mid-parse; the worker then parses and generates.
sub abort_mid_parse {
    my ($file) = @_;
    close send_request('/generate', slow_body());
    result($file, 'after the abort: ' . answer(send_request('/generate', padded_body())));
}

# A reload (SIGHUP to the master) while the slow body is parsed.
sub reload_mid_parse {
    my ($file) = @_;
    my $slow = send_request('/generate', slow_body());
    open my $fh, '<', server_root() . '/logs/nginx.pid' or die "nginx.pid: $!";
    my $master = <$fh> // '';
    chomp $master;
    kill 'HUP', $master or die "kill: $!";
    result($file, 'slow body across the reload: ' . answer($slow));
}

# With room for one body, a second large one while the first is parsed.
sub queue_full {
    my ($file) = @_;
    my $slow = send_request('/generate', slow_body());
    my $second = answer(send_request('/generate', padded_body()));
    result($file, "second body: $second", 'slow body: ' . answer($slow));
}

# musicgen_timeout past during the parse, then a GET.
sub parse_timeout {
    my ($file) = @_;
    my $slow = answer(send_request('/generate', slow_body()));
    result($file, "slow body: $slow", 'then ping: ' . answer(send_request('/ping')));
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', 'musicgen_model $TEST_NGINX_MUSICGEN_MODEL;')
        if !defined $block->http_config;
    $block->set_value('config', "location /generate { musicgen on; client_max_body_size 64m; }\n"
                                . "location /ping { default_type text/plain; return 200 \"pong\\n\"; }")
        if !defined $block->config;
});

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: while a large body is parsed the worker answers a GET, then the body's 400
--- init
main::answered_while_parsing('order.txt');
--- request
GET /order.txt
--- timeout: 60
--- error_code: 200
--- response_body
ping: 200 pong
slow body after the ping: not answered yet
slow body: 400 audio_prompt
--- no_error_log
[alert]
[crit]

=== TEST 2: a client that goes away mid-parse ends its request; the next body is parsed and generated
--- init
main::abort_mid_parse('abort.txt');
--- request
GET /abort.txt
--- timeout: 60
--- error_code: 200
--- response_body
after the abort: 200
--- error_log
client prematurely closed connection
--- no_error_log
[alert]
[crit]

=== TEST 3: a reload while a body is parsed: the old worker answers it
--- init
main::reload_mid_parse('reload.txt');
--- request
GET /reload.txt
--- timeout: 60
--- error_code: 200
--- response_body
slow body across the reload: 400 audio_prompt
--- no_error_log
[alert]
[crit]

=== TEST 4: a full parser queue (musicgen_batch 1, musicgen_queue 0: one body) is a 503 with Retry-After
--- http_config
musicgen_model $TEST_NGINX_MUSICGEN_MODEL;
musicgen_batch 1;
musicgen_queue 0;
--- init
main::queue_full('full.txt');
--- request
GET /full.txt
--- timeout: 60
--- error_code: 200
--- response_body
second body: 503 Retry-After
slow body: 400 audio_prompt
--- error_log
request parser queue full
--- no_error_log
[alert]
[crit]

=== TEST 5: musicgen_timeout bounds the parse too: a 504, and the worker goes on
--- config
location /generate { musicgen on; client_max_body_size 64m; musicgen_timeout 50ms; }
location /ping { default_type text/plain; return 200 "pong\n"; }
--- init
main::parse_timeout('timeout.txt');
--- request
GET /timeout.txt
--- timeout: 60
--- error_code: 200
--- response_body
slow body: 504
then ping: 200 pong
--- error_log
parsing the request timed out
--- no_error_log
[alert]
[crit]
