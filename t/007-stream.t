# Streamed raw audio: a GET's audio goes out as it is encoded (WAV with its
# exact Content-Length, FLAC/Ogg/MP3 chunked, Accept-Ranges: none), and its
# bytes are those of the same request collected first (musicgen_stream off),
# for every format and several durations (on and off the frame grid). A
# client that goes away cancels its generation (the status totals count it,
# running returns to 0); `nginx -s reload` during a chunked stream completes
# it; the output level and the 400 it can give.
#
# The comparisons between responses are made by the block's `--- init` code,
# which sends the requests and writes one line a check into html/; the
# block's request reads that back, so the checks hold under the stock
# Test::Nginx as well (nginx restarts per block).
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# One HTTP/1.1 request on loopback (Connection: close); returns (status,
# {lower-case header => value}, body with any chunked coding undone, 1 when
# the chunked body ended with its last chunk).
sub http11 {
    my ($path, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 30) or return (0, {}, '', 0);
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             . join('', map { "$_\r\n" } @headers) . "\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my ($status_line, @lines) = split /\r\n/, $head // '';
    my ($status) = ($status_line // '') =~ m{^HTTP/\S+ (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
    $body //= '';
    my $complete = 0;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $plain = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            if ($n == 0) {
                $complete = 1;
                last;
            }
            $plain .= substr($body, 0, $n, '');
            $body =~ s/\A\r\n//;
        }
        $body = $plain;
    }
    return ($status // 0, \%h, $body, $complete);
}

sub write_result {
    my ($file, @lines) = @_;
    open my $fh, '>', html_dir() . "/$file" or die "$file: $!";
    print $fh @lines;
    close $fh;
}

# For each format and duration: the streamed response against the collected
# one of the same seeded request; one line each.
sub compare_streams {
    my ($file) = @_;
    my @out;
    for my $format (qw(wav flac ogg mp3)) {
        for my $duration (1, 1.37, 2.5) {
            my $q = "prompt=lofi+beat&duration=$duration&seed=21&format=$format";
            my ($ss, $sh, $sb, $complete) = http11("/generate?$q");
            my ($cs, $ch, $cb) = http11("/collect?$q");
            my $framing = $format eq 'wav'
                ? (($sh->{'content-length'} // -1) == length($sb) && !$sh->{'transfer-encoding'}
                   ? 'length' : 'bad-length')
                : (($sh->{'transfer-encoding'} // '') =~ /chunked/ && !defined $sh->{'content-length'}
                   && $complete ? 'chunked' : 'bad-chunked');
            push @out, sprintf "%s %s: %s %s %s ranges %s/%s etag %s bytes %s\n", $format, $duration,
                $ss, $cs, $framing, $sh->{'accept-ranges'} // 'unset',
                $ch->{'accept-ranges'} // 'unset',
                ($sh->{etag} // 'a') eq ($ch->{etag} // 'b') ? 'same' : 'differs',
                length($sb) > 0 && $sb eq $cb ? 'same' : 'differ (' . length($sb) . ' vs ' . length($cb) . ')';
        }
    }
    write_result($file, @out);
}

sub status_json {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 5) or return '';
    print $s "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    return $resp;
}

sub wait_status {
    my ($pattern) = @_;
    for (1 .. 1000) {
        return 1 if status_json() =~ $pattern;
        Time::HiRes::sleep(0.01);
    }
    return 0;
}

# A client asks for a long clip and goes away while it is generated; the
# totals then say cancelled, nothing running.
sub abort_stream {
    my ($file) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 5);
    print $s "GET /generate?prompt=long+drone&duration=40&seed=3&format=flac HTTP/1.1\r\n"
             . "Host: localhost\r\n\r\n";
    my $running = wait_status(qr/"running":1/);
    close $s;
    my $after = wait_status(qr/"running":0,"queue_depth":0,.*"cancelled":1,/);
    my $status = status_json();
    my ($completed) = $status =~ /"completed":(\d+)/;
    write_result($file, "running while connected: $running\n",
                 "after: running 0, cancelled 1: $after\n",
                 "completed: " . ($completed // '?') . "\n");
}

sub master_pid {
    open my $fh, '<', server_root() . '/logs/nginx.pid' or return 0;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid || 0;
}

# A chunked stream with a reload (SIGHUP to the master) while it runs: the
# old worker completes it, byte for byte what the new one collects.
sub reload_during_stream {
    my ($file) = @_;
    my $q = 'prompt=reload+stream&duration=20&seed=6&format=ogg';
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        wait_status(qr/"running":1/);
        kill('HUP', master_pid());
        POSIX::_exit(0);
    }
    my ($ss, $sh, $sb, $complete) = http11("/generate?$q");
    waitpid($pid, 0);
    my ($cs, $ch, $cb) = http11("/collect?$q");
    write_result($file, "stream $ss complete $complete\n", "collect $cs\n",
                 "bytes " . (length($sb) > 0 && $sb eq $cb ? 'same' : 'differ') . "\n");
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', 'musicgen_model $TEST_NGINX_MUSICGEN_MODEL;')
        if !defined $block->http_config;
    $block->set_value('config', "location /generate { musicgen on; musicgen_max_duration 40; }\n"
                                . "location /collect { musicgen on; musicgen_stream off; musicgen_max_duration 40; }\n"
                                . "location /status { musicgen_status; }")
        if !defined $block->config;
});

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: streamed bytes are the collected bytes, for every format and on and off the frame grid
--- init
main::compare_streams('streams.txt');
--- request
GET /streams.txt
--- timeout: 120
--- error_code: 200
--- response_body
wav 1: 200 200 length ranges none/bytes etag same bytes same
wav 1.37: 200 200 length ranges none/bytes etag same bytes same
wav 2.5: 200 200 length ranges none/bytes etag same bytes same
flac 1: 200 200 chunked ranges none/bytes etag same bytes same
flac 1.37: 200 200 chunked ranges none/bytes etag same bytes same
flac 2.5: 200 200 chunked ranges none/bytes etag same bytes same
ogg 1: 200 200 chunked ranges none/bytes etag same bytes same
ogg 1.37: 200 200 chunked ranges none/bytes etag same bytes same
ogg 2.5: 200 200 chunked ranges none/bytes etag same bytes same
mp3 1: 200 200 chunked ranges none/bytes etag same bytes same
mp3 1.37: 200 200 chunked ranges none/bytes etag same bytes same
mp3 2.5: 200 200 chunked ranges none/bytes etag same bytes same

=== TEST 2: a client that goes away cancels its generation: counted, nothing left running
--- init
main::abort_stream('abort.txt');
--- request
GET /abort.txt
--- timeout: 30
--- error_code: 200
--- response_body
running while connected: 1
after: running 0, cancelled 1: 1
completed: 0
--- error_log
musicgen: client closed the connection, cancelling
--- no_error_log
[alert]

=== TEST 3: nginx -s reload during a chunked stream: the old worker completes it
--- init
main::reload_during_stream('reload.txt');
--- request
GET /reload.txt
--- timeout: 60
--- error_code: 200
--- response_body
stream 200 complete 1
collect 200
bytes same
--- error_log
reconfiguring
--- no_error_log
exited on signal
[alert]

=== TEST 4: level off: a float WAV, its exact length announced and sent (58-byte header, 4 bytes a sample)
--- config
location /generate { musicgen on; musicgen_level off; }
--- request
GET /generate?prompt=float&duration=1&seed=2
--- timeout: 30
--- error_code: 200
--- response_headers
Content-Type: audio/wav
Content-Length: 128058
Accept-Ranges: none
--- response_body_like: \ARIFF....WAVEfmt 

=== TEST 5: level off cannot make 16-bit FLAC: 400 naming the level
--- config
location /generate { musicgen on; musicgen_level off; }
--- request
GET /generate?prompt=float&duration=1&seed=2&format=flac
--- error_code: 400
--- response_body_like: ^\{"success":false,"error":"[^"]*","field":"level"\}$
