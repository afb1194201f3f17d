# A stereo model (musicgen-mkmodel --stereo: the facebook/musicgen-stereo-*
# layout): every format carries 2 channels of the clip's length, raw (read
# from each format's own header: WAV's fmt and data sizes, FLAC's
# STREAMINFO, Ogg/Opus's OpusHead and last granule position, MP3's channel
# mode and frame count) and in the JSON (sample_rate, channels, the WAV in
# audioUrl); streamed bytes are the collected bytes; a mono audio prompt is
# continued in stereo.
#
# The checks are made by the block's `--- init` code, which writes one line
# a check into html/ for the block's request to read back (as
# t/007-stream.t does).
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 ();

$ENV{TEST_NGINX_MUSICGEN_STEREO_MODEL} ||= 'build/demo-model-stereo';
$ENV{TEST_NGINX_MUSICGEN_STEREO_MODEL} = Cwd::abs_path($ENV{TEST_NGINX_MUSICGEN_STEREO_MODEL});

# One HTTP/1.1 request (Connection: close): (status, {lower-case header =>
# value}, body with any chunked coding undone).
sub http11 {
    my ($method, $path, $body, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Proto => 'tcp', Timeout => 60) or return (0, {}, '');
    print $s "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             . (defined $body ? "Content-Type: application/json\r\nContent-Length: "
                                . length($body) . "\r\n" : '')
             . join('', map { "$_\r\n" } @headers) . "\r\n" . ($body // '');
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    my ($status_line, @lines) = split /\r\n/, $head // '';
    my ($status) = ($status_line // '') =~ m{^HTTP/\S+ (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
    $rest //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $plain = '';
        while ($rest =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $plain .= substr($rest, 0, $n, '');
            $rest =~ s/\A\r\n//;
        }
        $rest = $plain;
    }
    return ($status // 0, \%h, $rest);
}

# (channels, frames at the format's own rate, that rate) of an encoded file,
# read from its headers; frames is the MP3's frames times 1152.
sub probe {
    my ($format, $b) = @_;
    if ($format eq 'wav') {
        return (0, 0, 0) unless substr($b, 0, 4) eq 'RIFF';
        my ($ch, $rate) = unpack 'vV', substr($b, 22, 6);
        my $bits = unpack 'v', substr($b, 34, 2);
        my $at = index($b, 'data');
        my $size = unpack 'V', substr($b, $at + 4, 4);
        return ($ch, $size / ($ch * $bits / 8), $rate);
    }
    if ($format eq 'flac') {
        return (0, 0, 0) unless substr($b, 0, 4) eq 'fLaC';
        my $si = substr($b, 8, 34);   # STREAMINFO after the block header
        my ($hi, $lo) = unpack 'NN', substr($si, 10, 8);
        my $rate = $hi >> 12;
        my $ch = (($hi >> 9) & 7) + 1;
        my $samples = ($hi & 0xf) * 2**32 + $lo;
        return ($ch, $samples, $rate);
    }
    if ($format eq 'ogg') {
        my $head = index($b, 'OpusHead');
        return (0, 0, 0) if $head < 0;
        my $ch = unpack 'C', substr($b, $head + 9, 1);
        my $preskip = unpack 'v', substr($b, $head + 10, 2);
        my $last = rindex($b, 'OggS');
        my ($glo, $ghi) = unpack 'VV', substr($b, $last + 6, 8);
        return ($ch, $ghi * 2**32 + $glo - $preskip, 48000);
    }
    # MP3: MPEG-1 Layer III frames, 1152 samples each
    my @kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320);
    my %rates = (0 => 44100, 1 => 48000, 2 => 32000);
    my ($at, $frames, $ch, $rate) = (0, 0, 0, 0);
    $at++ while $at + 4 <= length($b) && (unpack('n', substr($b, $at, 2)) & 0xfffe) != 0xfffa;
    while ($at + 4 <= length($b)) {
        my ($b0, $b1, $b2, $b3) = unpack 'C4', substr($b, $at, 4);
        last unless $b0 == 0xff && ($b1 & 0xfe) == 0xfa;
        $rate = $rates{($b2 >> 2) & 3} // last;
        my $kbps = $kbps[$b2 >> 4] || last;
        $ch = ($b3 >> 6) == 3 ? 1 : 2;
        $at += int(144000 * $kbps / $rate) + (($b2 >> 1) & 1);
        $frames++;
    }
    return ($ch, $frames * 1152, $rate);
}

sub write_result {
    my ($file, @lines) = @_;
    open my $fh, '>', html_dir() . "/$file" or die "$file: $!";
    print $fh @lines;
    close $fh;
}

# Each format raw, streamed and collected: channels, whether the length is
# the clip's (MP3: the codec's delay and padding add under three frames),
# and whether the two responses are the same bytes.
sub raw_answers {
    my ($file) = @_;
    my @out;
    for my $format (qw(wav flac ogg mp3)) {
        my $q = "prompt=wide+stereo+pads&duration=1.5&seed=9&format=$format";
        my ($ss, $sh, $sb) = http11('GET', "/generate?$q");
        my ($cs, $ch, $cb) = http11('GET', "/collect?$q");
        my ($channels, $frames, $rate) = probe($format, $sb);
        my $want = 1.5 * $rate;
        my $length = $format eq 'mp3' ? ($frames >= $want && $frames < $want + 3 * 1152)
                                      : $frames == $want;
        # a streamed WAV announces its stereo size up front
        my $framing = $format ne 'wav' ? ''
            : ($sh->{'content-length'} // -1) == length($sb) ? ', content-length right'
            : ', content-length wrong';
        push @out, sprintf "%s: %s %s, %d channels at %d Hz, length %s, bytes %s%s\n", $format,
            $ss, $cs, $channels, $rate, $length ? 'right' : "wrong ($frames for $want)",
            length($sb) > 0 && $sb eq $cb ? 'same' : 'differ', $framing;
    }
    write_result($file, @out);
}

# A mono 16-bit WAV of `seconds` of a tone at 32 kHz, as base64.
sub mono_wav_base64 {
    my ($seconds) = @_;
    my $n = int($seconds * 32000);
    my $pcm = pack 'v*', map { int(0.3 * 32767 * sin(2 * 3.14159265 * 330 * $_ / 32000)) & 0xffff }
                         0 .. $n - 1;
    my $wav = 'RIFF' . pack('V', 36 + length $pcm) . 'WAVEfmt '
              . pack('VvvVVvv', 16, 1, 1, 32000, 64000, 2, 16) . 'data' . pack('V', length $pcm) . $pcm;
    return MIME::Base64::encode_base64($wav, '');
}

# The JSON answer: its sample_rate and channels, and the WAV it carries;
# then a mono audio prompt continued by the stereo model.
sub json_answers {
    my ($file) = @_;
    my @out;
    for my $body ({prompt => 'wide stereo pads', duration => 1.5, seed => 9},
                  {prompt => 'wide stereo pads', duration => 2, seed => 9,
                   audio_prompt => mono_wav_base64(1)}) {
        my ($s, $h, $b) = http11('POST', '/generate', JSON::PP->new->canonical->encode($body));
        my $j = eval { JSON::PP::decode_json($b) } // {};
        my ($wav) = ($j->{audioUrl} // '') =~ m{^data:audio/wav;base64,(.*)$};
        my ($channels, $frames) = probe('wav', MIME::Base64::decode_base64($wav // ''));
        push @out, sprintf "%s %s: sample_rate %s, channels %s, duration %s, wav %d channels, "
                           . "%d frames%s\n", $body->{audio_prompt} ? 'mono prompt' : 'json', $s,
            $j->{sample_rate} // 'none', $j->{channels} // 'none', $j->{duration} // 'none',
            $channels, $frames,
            $body->{audio_prompt} ? ", prompt_seconds " . ($j->{prompt_seconds} // 'none') : '';
    }
    write_result($file, @out);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', 'musicgen_model $TEST_NGINX_MUSICGEN_STEREO_MODEL;')
        if !defined $block->http_config;
    $block->set_value('config', "location /generate { musicgen on; musicgen_max_duration 40; }\n"
                                . "location /collect { musicgen on; musicgen_stream off; "
                                . "musicgen_max_duration 40; }")
        if !defined $block->config;
});

workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: raw responses in every format: 2 channels of the clip's length, streamed bytes the collected ones
--- init
main::raw_answers('raw.txt');
--- request
GET /raw.txt
--- timeout: 120
--- error_code: 200
--- response_body
wav: 200 200, 2 channels at 32000 Hz, length right, bytes same, content-length right
flac: 200 200, 2 channels at 32000 Hz, length right, bytes same
ogg: 200 200, 2 channels at 48000 Hz, length right, bytes same
mp3: 200 200, 2 channels at 32000 Hz, length right, bytes same

=== TEST 2: the JSON says sample_rate and channels, its WAV is stereo; a mono prompt is continued in stereo
--- init
main::json_answers('json.txt');
--- request
GET /json.txt
--- timeout: 120
--- error_code: 200
--- response_body
json 200: sample_rate 32000, channels 2, duration 1.5, wav 2 channels, 48000 frames
mono prompt 200: sample_rate 32000, channels 2, duration 2, wav 2 channels, 64000 frames, prompt_seconds 1
