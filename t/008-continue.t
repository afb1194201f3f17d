# Continuation from the user's audio (audio_prompt in a JSON POST): the
# clip's duration counts the prompt, the JSON says prompt_seconds (and
# prompt_trimmed_seconds when a prompt longer than a window's prompt was cut
# to its end), raw responses say the same in X-Musicgen-Prompt-Seconds
# (streamed or collected, the WAV's Content-Length the whole clip's); bad
# audio and a duration not past the prompt are 400s naming their field; a
# body over client_max_body_size gets the configured JSON 413.
#
# The WAV prompts are made here (16-bit PCM, 32 kHz); the requests are sent
# by the block's `--- init` code, which writes one line a check into html/
# for the block's request to read back (as t/007-stream.t does).
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 ();

$ENV{TEST_NGINX_MUSICGEN_MODEL} ||= 'build/demo-model';
$ENV{TEST_NGINX_MUSICGEN_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_MODEL});

# A mono 16-bit WAV of `seconds` of a tone at 32 kHz, as base64.
sub wav_base64 {
    my ($seconds, $freq) = @_;
    my $n = int($seconds * 32000);
    my $pcm = pack 'v*', map { int(0.3 * 32767 * sin(2 * 3.14159265 * $freq * $_ / 32000)) & 0xffff }
                         0 .. $n - 1;
    my $wav = 'RIFF' . pack('V', 36 + length $pcm) . 'WAVEfmt '
              . pack('VvvVVvv', 16, 1, 1, 32000, 64000, 2, 16) . 'data' . pack('V', length $pcm) . $pcm;
    return MIME::Base64::encode_base64($wav, '');
}

# One HTTP/1.1 POST of a JSON body (Connection: close): (status, {lower-case
# header => value}, body with any chunked coding undone).
sub post {
    my ($path, $json, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 60) or return (0, {}, '');
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             . "Content-Type: application/json\r\nContent-Length: " . length($json) . "\r\n"
             . join('', map { "$_\r\n" } @headers) . "\r\n" . $json;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my ($status_line, @lines) = split /\r\n/, $head // '';
    my ($status) = ($status_line // '') =~ m{^HTTP/\S+ (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
    $body //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $plain = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $plain .= substr($body, 0, $n, '');
            $body =~ s/\A\r\n//;
        }
        $body = $plain;
    }
    return ($status // 0, \%h, $body);
}

sub request_json {
    my ($audio, %fields) = @_;
    return JSON::PP->new->canonical->encode({prompt => 'lofi beat', audio_prompt => $audio,
                                             %fields});
}

sub write_result {
    my ($file, @lines) = @_;
    open my $fh, '>', html_dir() . "/$file" or die "$file: $!";
    print $fh @lines;
    close $fh;
}

# The JSON answer and the raw ones (streamed, collected) of one request: a
# 1 s prompt in a 2 s clip.
sub continue_answers {
    my ($file) = @_;
    my $body = request_json(wav_base64(1, 440), duration => 2, seed => 7);
    my @out;
    my ($s, $h, $b) = post('/generate', $body);
    my $j = eval { JSON::PP::decode_json($b) } // {};
    my ($wav) = ($j->{audioUrl} // '') =~ m{^data:audio/wav;base64,(.*)$};
    $wav = MIME::Base64::decode_base64($wav // '');
    push @out, sprintf "json %s: prompt_seconds %s, trimmed %s, duration %s, wav %d bytes\n", $s,
        $j->{prompt_seconds} // 'none', $j->{prompt_trimmed_seconds} // 'none',
        $j->{duration} // 'none', length $wav;
    for my $path ('/generate', '/collect') {
        ($s, $h, $b) = post($path, $body, 'Accept: audio/wav');
        push @out, sprintf "raw %s %s: prompt %s, trimmed %s, length %s, body %d bytes\n", $path, $s,
            $h->{'x-musicgen-prompt-seconds'} // 'none',
            $h->{'x-musicgen-prompt-trimmed-seconds'} // 'none',
            $h->{'content-length'} // 'none', length $b;
    }
    write_result($file, @out);
}

# A 12 s prompt where a window keeps 10 s of prompt (the demo model's
# window of 30 s less a stride of 20 s): its end is kept.
sub trimmed_answer {
    my ($file) = @_;
    my $body = request_json(wav_base64(12, 220), duration => 12, seed => 8, extend_stride => 20);
    my ($s, $h, $b) = post('/generate', $body);
    my $j = eval { JSON::PP::decode_json($b) } // {};
    my ($rs, $rh) = post('/generate', $body, 'Accept: audio/wav');
    write_result($file, sprintf("json %s: prompt_seconds %s, trimmed %s, duration %s\n", $s,
                                $j->{prompt_seconds} // 'none', $j->{prompt_trimmed_seconds} // 'none',
                                $j->{duration} // 'none'),
                 sprintf("raw %s: prompt %s, trimmed %s\n", $rs,
                         $rh->{'x-musicgen-prompt-seconds'} // 'none',
                         $rh->{'x-musicgen-prompt-trimmed-seconds'} // 'none'));
}

# Refusals: status and the field named.
sub refusals {
    my ($file) = @_;
    my @cases = (
        ['not audio', request_json(MIME::Base64::encode_base64('this is no audio file at all', ''),
                                   duration => 2)],
        ['bad base64', request_json('@@@@', duration => 2)],
        ['empty', request_json('', duration => 2)],
        ['duration of the prompt', request_json(wav_base64(1, 440), duration => 1)],
        ['duration short of the prompt', request_json(wav_base64(1, 440), duration => 0.5)],
    );
    my @out;
    for my $c (@cases) {
        my ($s, $h, $b) = post('/generate', $c->[1]);
        my $j = eval { JSON::PP::decode_json($b) } // {};
        push @out, sprintf "%s: %s %s\n", $c->[0], $s, $j->{field} // 'no field';
    }
    write_result($file, @out);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', 'musicgen_model $TEST_NGINX_MUSICGEN_MODEL;')
        if !defined $block->http_config;
    $block->set_value('config', "location /generate { musicgen on; musicgen_max_duration 40; "
                                . "client_max_body_size 24m; }\n"
                                . "location /collect { musicgen on; musicgen_stream off; "
                                . "musicgen_max_duration 40; client_max_body_size 24m; }")
        if !defined $block->config;
});

workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a 1 s audio prompt in a 2 s clip: JSON prompt_seconds, a 2 s WAV; raw answers say it in a header
--- init
main::continue_answers('continue.txt');
--- request
GET /continue.txt
--- timeout: 60
--- error_code: 200
--- response_body
json 200: prompt_seconds 1, trimmed none, duration 2, wav 128044 bytes
raw /generate 200: prompt 1.000, trimmed none, length 128044, body 128044 bytes
raw /collect 200: prompt 1.000, trimmed none, length 128044, body 128044 bytes

=== TEST 2: a prompt longer than a window's prompt keeps its end, and says what was cut
--- init
main::trimmed_answer('trimmed.txt');
--- request
GET /trimmed.txt
--- timeout: 120
--- error_code: 200
--- response_body
json 200: prompt_seconds 10, trimmed 2, duration 12
raw 200: prompt 10.000, trimmed 2.000

=== TEST 3: bad audio prompts and durations not past the prompt are 400s naming the field
--- init
main::refusals('refusals.txt');
--- request
GET /refusals.txt
--- timeout: 60
--- error_code: 200
--- response_body
not audio: 400 audio_prompt
bad base64: 400 audio_prompt
empty: 400 audio_prompt
duration of the prompt: 400 duration
duration short of the prompt: 400 duration

=== TEST 4: a body over client_max_body_size: the JSON 413 that conf/nginx.conf configures
--- config
location /generate {
    musicgen on;
    client_max_body_size 1k;
    error_page 413 = @body_too_large;
}
location @body_too_large {
    default_type application/json;
    return 413 '{"success":false,"error":"the request body is over client_max_body_size","field":"audio_prompt"}';
}
--- more_headers
Content-Type: application/json
--- request eval
"POST /generate\n" . main::request_json(main::wav_base64(0.1, 440), duration => 2)
--- error_code: 413
--- response_body_like: "field":"audio_prompt"
