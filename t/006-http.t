# HTTP details a browser or a cache relies on: HEAD answered from the
# request without generating (the GET's headers, Content-Length when the
# format fixes it), and byte ranges on complete raw-audio responses (206 with
# Content-Range, 416, If-Range against the ETag), never on JSON; a Range
# of the whole file from byte 0 gets the stream.
#
# Figures: the demo model makes 32 kHz mono audio at 50 frames a second, so
# a clip of d seconds is round(d * 50) frames of 640 samples, and its WAV is
# 44 + 2 * samples bytes. 1.37 s is 68.5 frames as written and a little more
# as a float: 69 frames, 44160 samples, 88364 bytes.
#
# Comparisons between two responses (the GET's ETag against the HEAD's) are
# made by the block's `--- init` code, which sends both and writes what it
# saw into html/; the block's request reads that back, so the checks hold
# under the stock Test::Nginx as well.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use Time::HiRes ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# A pattern for a WAV body of exactly $len bytes (Perl caps one quantifier
# near 32k, so the count is split).
sub wav_body_of {
    my ($len) = @_;
    my $rest = $len - 4;
    return '\ARIFF(?s:.{16000}){' . int($rest / 16000) . '}(?s:.{' . ($rest % 16000) . '})\z';
}

# One HTTP/1.0 request on loopback, retried while nginx is still starting;
# returns (status, {lower-case header => value}).
sub http_request {
    my ($method, $path, @headers) = @_;
    for (1 .. 200) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                      Proto => 'tcp', Timeout => 10);
        if (!$s) {
            Time::HiRes::sleep(0.025);
            next;
        }
        print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n"
                 . join('', map { "$_\r\n" } @headers) . "\r\n";
        local $/;
        my $resp = <$s> // '';
        close $s;
        my ($head) = split /\r\n\r\n/, $resp, 2;
        my ($status_line, @lines) = split /\r\n/, $head // '';
        my ($status) = ($status_line // '') =~ m{^HTTP/\S+ (\d+)};
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
        return ($status // 0, \%h);
    }
    return (0, {});
}

# Sends the GET and the HEAD of $path and the follow-ups that use the GET's
# ETag; writes one line a check into html/$file.
sub compare_etags {
    my ($file, $path) = @_;
    my ($get_status, $get) = http_request('GET', $path);
    my ($head_status, $head) = http_request('HEAD', $path);
    my $etag = $get->{etag} // 'none';
    my ($inm_status) = http_request('HEAD', $path, "If-None-Match: $etag");
    my ($range_status, $range) = http_request('GET', $path, 'Range: bytes=0-3', "If-Range: $etag");
    open my $fh, '>', html_dir() . "/$file" or die "$file: $!";
    print $fh "GET $get_status ETag $etag\n",
              "HEAD $head_status ETag " . ($head->{etag} // 'none') . "\n",
              "HEAD If-None-Match $inm_status\n",
              "GET If-Range $range_status " . ($range->{'content-range'} // 'none') . "\n";
    close $fh;
}

# Every block runs against the same server: the model, the musicgen
# location and its status.
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', 'musicgen_model $TEST_NGINX_MUSICGEN_MODEL;')
        if !defined $block->http_config;
    $block->set_value('config', "location /generate { musicgen on; }\n"
                                . "location /status { musicgen_status; }")
        if !defined $block->config;
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: HEAD of a WAV has the GET's Content-Length, for clips on and off the frame grid
The GET streams (Accept-Ranges: none); the HEAD says bytes, since a GET
with a Range is answered from the complete file.
--- request eval
["GET /generate?prompt=rock+guitar&duration=1&seed=5",
 "HEAD /generate?prompt=rock+guitar&duration=1&seed=5",
 "GET /generate?prompt=rock+guitar&duration=1.37&seed=5",
 "HEAD /generate?prompt=rock+guitar&duration=1.37&seed=5",
 "GET /generate?prompt=rock+guitar&duration=2.5",
 "HEAD /generate?prompt=rock+guitar&duration=2.5"]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_headers eval
["Content-Type: audio/wav\nContent-Length: 64044\nAccept-Ranges: none",
 "Content-Type: audio/wav\nContent-Length: 64044\nAccept-Ranges: bytes",
 "Content-Type: audio/wav\nContent-Length: 88364\nAccept-Ranges: none",
 "Content-Type: audio/wav\nContent-Length: 88364\nAccept-Ranges: bytes",
 "Content-Type: audio/wav\nContent-Length: 160044\nAccept-Ranges: none\nCache-Control: no-store\n!ETag",
 "Content-Type: audio/wav\nContent-Length: 160044\nAccept-Ranges: bytes\nCache-Control: no-store\n!ETag"]
--- response_body_like eval
[main::wav_body_of(64044), '\A\z', main::wav_body_of(88364), '\A\z',
 main::wav_body_of(160044), '\A\z']
--- timeout: 30

=== TEST 2: a HEAD generates nothing: no generation line, the worker's totals stay at zero
--- request eval
["HEAD /generate?prompt=rock+guitar&duration=2&seed=5",
 "HEAD /generate?prompt=rock+guitar&duration=2&format=flac",
 "GET /status"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
['\A\z', '\A\z', '"running":0,"queue_depth":0,"totals":\{"completed":0,"failed":0,"rejected":0,']
--- no_error_log
musicgen: request
[error]

=== TEST 3: the same request as a GET does generate (the line TEST 2 looks for)
--- request
GET /generate?prompt=rock+guitar&duration=2&seed=5
--- error_code: 200
--- response_body_like: \ARIFF
--- error_log
musicgen: request

=== TEST 4: HEAD of a FLAC has no Content-Length (its size depends on the audio) but says it serves ranges
--- request
HEAD /generate?prompt=jazz&duration=1&seed=2&format=flac
--- error_code: 200
--- response_headers
Content-Type: audio/flac
Accept-Ranges: bytes
!Content-Length
--- response_headers_like
ETag: ^"mg-[0-9a-f]{16}"$
Cache-Control: ^public, max-age=31536000, immutable$

=== TEST 5: a seeded HEAD carries the GET's ETag; both If-None-Match and If-Range accept it
--- init
main::compare_etags('etags.txt', '/generate?prompt=ambient+pads&duration=1&seed=11');
--- request
GET /etags.txt
--- error_code: 200
--- response_body_like: \AGET 200 ETag ("mg-[0-9a-f]{16}")\nHEAD 200 ETag \1\nHEAD If-None-Match 304\nGET If-Range 206 bytes 0-3/64044\n\z

=== TEST 6: HEAD with a bad field is the GET's 400, without the body
--- request
HEAD /generate?prompt=jazz&duration=999&seed=2
--- error_code: 400
--- response_headers
Content-Type: application/json
!ETag
--- response_body_like: \A\z

=== TEST 7: HEAD with If-None-Match: * on a seeded request is a 304
--- request
HEAD /generate?prompt=jazz&duration=1&seed=2
--- more_headers
If-None-Match: *
--- error_code: 304
--- response_headers_like
ETag: ^"mg-[0-9a-f]{16}"$

=== TEST 8: Range: bytes=0-43 is a 206 with exactly the WAV header
--- request
GET /generate?prompt=rock+guitar&duration=1&seed=5
--- more_headers
Range: bytes=0-43
--- error_code: 206
--- response_headers
Content-Type: audio/wav
Content-Range: bytes 0-43/64044
Content-Length: 44
!Accept-Ranges
--- response_headers_like
ETag: ^"mg-[0-9a-f]{16}"$
--- response_body_like: \ARIFF\x{24}\x{fa}\x{00}\x{00}WAVEfmt (?s:.{20})data\x{00}\x{fa}\x{00}\x{00}\z

=== TEST 9: a suffix range and an open-ended one
--- request eval
["GET /generate?prompt=rock+guitar&duration=1&seed=5",
 "GET /generate?prompt=rock+guitar&duration=1&seed=5"]
--- more_headers eval
["Range: bytes=-100", "Range: bytes=64000-"]
--- error_code eval
[206, 206]
--- response_headers eval
["Content-Range: bytes 63944-64043/64044\nContent-Length: 100",
 "Content-Range: bytes 64000-64043/64044\nContent-Length: 44"]
--- response_body_like eval
['\A(?s:.{100})\z', '\A(?s:.{44})\z']

=== TEST 10: a range past the end is a 416 naming the length
--- request
GET /generate?prompt=rock+guitar&duration=1&seed=5
--- more_headers
Range: bytes=70000-80000
--- error_code: 416
--- response_headers
Content-Range: bytes */64044

=== TEST 11: If-Range with another ETag gets the whole file
--- request
GET /generate?prompt=rock+guitar&duration=1&seed=5
--- more_headers
Range: bytes=0-43
If-Range: "mg-0000000000000000"
--- error_code: 200
--- response_headers
Content-Length: 64044
!Content-Range
--- response_body_like eval
main::wav_body_of(64044)

=== TEST 12: POST asking for raw audio gets ranges too
--- request
POST /generate
{"prompt": "jazz", "duration": 1, "seed": 2}
--- more_headers
Content-Type: application/json
Accept: audio/*
Range: bytes=0-3
--- error_code: 206
--- response_headers
Content-Type: audio/wav
Content-Range: bytes 0-3/64044
Cache-Control: no-store
--- response_body: RIFF

=== TEST 13: a JSON response ignores Range
--- request
POST /generate
{"prompt": "jazz", "duration": 1, "seed": 2}
--- more_headers
Content-Type: application/json
Range: bytes=0-3
--- error_code: 200
--- response_headers
Content-Type: application/json
!Content-Range
!Accept-Ranges
--- response_body_like: \A\{"success":true,"audioUrl":"data:audio/wav;base64,UklGR

=== TEST 14: Range: bytes=0- (what browsers' <audio> sends first) gets the stream, all of it
--- request
GET /generate?prompt=rock+guitar&duration=1&seed=5
--- more_headers
Range: bytes=0-
--- error_code: 200
--- response_headers
Content-Type: audio/wav
Content-Length: 64044
Accept-Ranges: none
!Content-Range
--- response_body_like eval
main::wav_body_of(64044)
