package Test::Nginx::Socket;

# Minimal stand-in for openresty's Test::Nginx::Socket (test-nginx), written
# from its documented behaviour for the subset our t/*.t suites use.  Only
# used when the real module is not installed (PERL5LIB=t/lib); see
# t/README.md.  Every sub here has a prototype: Spiffy's -Base source filter
# leaves those alone.

use Test::Base -Base;

our $VERSION = '0.01-mini';

use IO::Select ();
use IO::Socket::INET ();
use HTTP::Response ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Time::HiRes qw(sleep time);
use List::Util qw(min);
use Test::Nginx::Util;

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
);

$RunTestHelper = \&run_test_helper;
$CheckErrorLog = \&check_error_log;

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub parse_more_headers ($) {
    my $in = shift;
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $in // '') {
        next if $h =~ /^\s*#/ || $h !~ /\S/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $v =~ s/\r$//;
        $chunked = 1 if lc($k) eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# "METHOD [URI [VERSION]]\n[body]" -> the bytes on the wire.
sub build_request ($$$) {
    my ($name, $req, $more_headers) = @_;
    $req =~ s/^(?:\s*#[^\n]*\n)+//s;
    $req =~ s/^\s+//s;
    my ($first, $body) = split /\n/, $req, 2;
    $first //= '';
    my ($meth, $uri, $ver) = split ' ', $first;
    bail_out("$name - Request line should be non-empty") if !defined $meth;
    $uri //= '/';
    $ver //= 'HTTP/1.1';
    $body //= '';

    my ($hdr, $chunked) = parse_more_headers($more_headers);
    if (!$chunked && $body ne '' && $hdr !~ /(?:^|\n)Content-Length:/i) {
        $body =~ s/^\s+|\s+$//gs;
        $hdr .= 'Content-Length: ' . length($body) . "\r\n";
    }
    my $head = '';
    $head .= "Host: $Test::Nginx::Util::ServerName\r\n" if $hdr !~ /(?:^|\n)Host:/i;
    $head .= "Connection: close\r\n" if $hdr !~ /(?:^|\n)Connection/i;
    return "$meth $uri $ver\r\n$head$hdr\r\n$body";
}

# list of requests; each request is a list of packets
sub get_req_from_block ($) {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $raw = $block->raw_request)) {
        return [ref $raw eq 'ARRAY' ? [@$raw] : [$raw]];
    }
    my $request = $block->request;
    bail_out("$name - no --- request or --- raw_request section") if !defined $request;
    my $mh = $block->more_headers;
    my @reqs = ref $request eq 'ARRAY' ? @$request : ($request);
    my @out;
    for my $i (0 .. $#reqs) {
        my $h = ref $mh eq 'ARRAY' ? $mh->[$i] : $mh;
        my $r = $reqs[$i];
        bail_out("$name - packet arrays in --- request are not supported by this runner")
            if ref $r;
        push @out, [build_request($name, $r, $h)];
    }
    return \@out;
}

sub indexed ($$$$) {
    my ($name, $v, $idx, $need_array) = @_;
    if ($need_array) {
        return $v->[$idx] if ref $v eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results should be arrays as well.");
    }
    return ref $v eq 'ARRAY' ? $v->[0] : $v;
}

# Returns (raw response, timed_out).  The timeout is an inactivity timeout
# like the real one's, plus a hard cap of 20x it so a trickling server
# cannot hang the run.
sub send_request ($$$) {
    my ($packets, $block, $timeout) = @_;
    my $name = $block->name;
    my $sock;
    for my $try (1 .. 50) {
        $sock = IO::Socket::INET->new(
            PeerAddr => $Test::Nginx::Util::ServerAddr,
            PeerPort => $Test::Nginx::Util::ServerPortForClient,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        last if $sock;
        sleep min(1, 0.015 * $try);
    }
    if (!$sock) {
        Test::More->builder->no_ending(1);
        fail("$name - Can't connect to $Test::Nginx::Util::ServerAddr:"
             . "$Test::Nginx::Util::ServerPortForClient: $! (aborted)");
        return ('', 0);
    }
    $sock->blocking(0);
    my $delay = $block->raw_request_middle_delay;
    my @out = @$packets;
    my ($buf, $off, $resp, $eof) = (shift(@out), 0, '', 0);
    my $deadline = time + 20 * $timeout;
    my $sel = IO::Select->new($sock);
    my $timed_out = 0;
    while (!$eof) {
        my $want_write = defined $buf;
        my ($r, $w) = IO::Select->select($sel, $want_write ? $sel : undef, undef,
                                         min($timeout, $deadline - time));
        if (!$r && !$w) {
            next if $!{EINTR};
            $timed_out = 1;
            last;
        }
        if ($w && @$w && defined $buf) {
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                if (!$!{EAGAIN} && !$!{EWOULDBLOCK}) {
                    warn "$name - write failed: $!\n";
                    undef $buf;
                    @out = ();
                }
            } else {
                $off += $n;
                if ($off >= length $buf) {
                    ($buf, $off) = (shift(@out), 0);
                    sleep $delay if defined $buf && $delay;
                    $sock->shutdown(1) if !defined $buf && defined $block->shutdown;
                }
            }
        }
        if ($r && @$r) {
            my $n = sysread($sock, my $chunk, 65536);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EWOULDBLOCK};
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            $eof = 1 if $n == 0;
            $resp .= $chunk;
        }
    }
    close $sock;
    if ($timed_out) {
        if (defined $block->abort) {
            sleep 0.005;
        } else {
            Test::More->builder->no_ending(1);
            fail("ERROR: client socket timed out - $name\n");
        }
    }
    return ($resp, $timed_out);
}

sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        $code = undef;
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);
    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    if (defined $enc && $enc eq 'chunked') {
        my $in = $res->content // '';
        my $out = '';
        while (1) {
            if ($in =~ /\G[ \t]*([A-Fa-f0-9]+)[^\r\n]*\r\n/gc) {
                my $n = hex $1;
                if ($n == 0) {
                    last;
                }
                if (length($in) - pos($in) < $n + 2) {
                    Test::More->builder->no_ending(1);
                    fail("$name - invalid chunked data received (truncated chunk)");
                    return ($res, $raw_headers);
                }
                $out .= substr($in, pos($in), $n);
                pos($in) += $n;
                if ($in !~ /\G\r\n/gc) {
                    Test::More->builder->no_ending(1);
                    fail("$name - invalid chunked data received (expected CRLF)");
                    return ($res, $raw_headers);
                }
            } else {
                Test::More->builder->no_ending(1);
                fail("$name - no last chunk found");
                return ($res, $raw_headers);
            }
        }
        $res->content($out);
    } elsif (defined $len && $len =~ /^\d+$/) {
        my $c = $res->content // '';
        if (length $c < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got "
                 . length($c) . "\n" if !$head_req;
        } elsif (length $c > $len) {
            $res->content(substr $c, 0, $len);
        }
    }
    return ($res, $raw_headers);
}

sub check_error_code ($$$$) {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = indexed($name, $block->error_code_like, $idx, $need_array);
        like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        is($got, indexed($name, $block->error_code, $idx, $need_array),
           "$name - status code ok");
    } else {
        is($got, 200, "$name - status code ok");
    }
}

sub subst_port ($) {
    my $v = shift;
    return $v if !defined $v || ref $v;
    $v =~ s/\$ServerPortForClient\b/$Test::Nginx::Util::ServerPortForClient/g;
    $v =~ s/\$ServerPort\b/$Test::Nginx::Util::ServerPort/g;
    return $v;
}

sub check_response_headers ($$$$$) {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $p = indexed($name, $block->raw_response_headers_like, $idx, $need_array);
        like($raw_headers, qr/$p/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $p = indexed($name, $block->raw_response_headers_unlike, $idx, $need_array);
        unlike($raw_headers, qr/$p/s, "$name - raw resp headers unlike");
    }
    if (defined $block->response_headers) {
        my $h = parse_headers(indexed($name, $block->response_headers, $idx, $need_array));
        for my $k (sort keys %$h) {
            my $v = $h->{$k};
            if (!defined $v) {
                unlike($raw_headers, qr/^\s*\Q$k\E\s*:/msi,
                       "$name - header $k not present in the raw headers");
                next;
            }
            is(($res && $res->header($k)) // '', subst_port($v), "$name - header $k ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(indexed($name, $block->response_headers_like, $idx, $need_array));
        for my $k (sort keys %$h) {
            my $v = $h->{$k} // '';
            like(($res && $res->header($k)) // '', qr/^$v$/, "$name - header $k like ok");
        }
    }
}

sub check_response_body ($$$$$) {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;
    if (defined $block->response_body) {
        my $expected = subst_port(indexed($name, $block->response_body, $idx, $need_array));
        if (ref $expected) {
            like($content, $expected, "$name - response_body - like (repeated req $rep, req $idx)");
        } else {
            is_str($content, $expected,
                   "$name - response_body - response is expected (repeated req $rep, req $idx)");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $like = defined $block->response_body_like;
        my $pat = subst_port(indexed($name,
            $like ? $block->response_body_like : $block->response_body_unlike,
            $idx, $need_array));
        my $type = $like ? 'like' : 'unlike';
        my $summary = trim($content) // '';
        $summary = substr($summary, 0, 200) . '...' if length $summary > 200;
        if ($like) {
            like($content, qr/$pat/s, "$name - response_body_$type - response is expected ($summary)");
        } else {
            unlike($content, qr/$pat/s, "$name - response_body_$type - response is expected ($summary)");
        }
    }
}

sub pat_list ($) {
    my $p = shift;
    return [] if !defined $p;
    if (!ref $p) {
        chomp $p;
        return [split /\n+/, $p];
    }
    return [$p] if ref $p eq 'Regexp';
    return [@$p];
}

sub pat_match ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

# The section's patterns (want: each must match a line; else none may
# match any) against the lines of one log, as the real module names them.
sub check_log_patterns ($$$$$$) {
    my ($name, $rep, $log, $pats, $lines, $want) = @_;
    if ($want) {
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next if !defined $pat;
                if (pat_match($line, $pat)) {
                    pass("$name - pattern \"$pat\" matches a line in $log (req $rep)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            fail("$name - pattern \"$pat\" should match a line in $log (req $rep)");
        }
        return;
    }
    my %found;
    for my $line (@$lines) {
        for my $pat (@$pats) {
            next if !defined $pat || !pat_match($line, $pat);
            # a pattern matching several lines fails several times, as
            # in the real module: do not let the plan count hide it
            Test::More->builder->no_ending(1) if $found{$pat}++;
            fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any line "
                 . "in $log but matches line \"" . fmt_str($line) . "\" (req $rep)");
        }
    }
    for my $pat (@$pats) {
        next if $found{$pat};
        pass("$name - pattern \"" . fmt_str($pat) . "\" does not match a line in $log (req $rep)");
    }
}

sub check_error_log ($$$$) {
    my ($block, $res, $dry_run, $rep) = @_;
    my $name = $block->name;
    my $lines;
    my $src = join "\n", map { ref $_ ? "$_" : $_ // '' }
        @{pat_list($block->error_log)}, @{pat_list($block->no_error_log)};

    if (defined $block->error_log) {
        $lines ||= error_log_data();
        check_log_patterns($name, $rep, 'error.log', pat_list($block->error_log), $lines, 1);
    }
    if (defined $block->no_error_log) {
        $lines ||= error_log_data();
        check_log_patterns($name, $rep, 'error.log', pat_list($block->no_error_log), $lines, 0);
    }
    if (defined $block->access_log || defined $block->no_access_log) {
        my $acc = access_log_data();
        check_log_patterns($name, $rep, 'access.log', pat_list($block->access_log), $acc, 1)
            if defined $block->access_log;
        check_log_patterns($name, $rep, 'access.log', pat_list($block->no_access_log), $acc, 0)
            if defined $block->no_access_log;
    }

    $lines ||= error_log_data();
    for my $lvl (qw(alert crit emerg)) {
        next if $src =~ /\[\Q$lvl\E/;
        for my $line (@$lines) {
            warn "WARNING: $name - " . fmt_str($line) . "\n" if $line =~ /\[\Q$lvl\E\]/;
        }
    }
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            chomp(my $l = $line);
            fail("$name - $l");
        }
    }
}

sub run_test_helper ($$$) {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;
    my $reqs = get_req_from_block($block);
    my $timeout = parse_time($block->timeout) // timeout();
    my $need_array = @$reqs > 1;
    my $res;

    for my $idx (0 .. $#$reqs) {
        my $packets = $reqs->[$idx];
        my $head_req = join('', @$packets) =~ /^\s*HEAD\s+/ ? 1 : 0;
        my ($raw) = send_request($packets, $block, $timeout);
        warn "response: [$raw]\n" if verbose();
        my $raw_headers;
        if (!defined $block->ignore_response) {
            ($res, $raw_headers) = parse_response($name, $raw, $head_req);
            check_error_code($block, $res, $idx, $need_array);
            check_response_headers($block, $res, $raw_headers, $idx, $need_array);
            check_response_body($block, $res, $idx, $rep, $need_array);
        }
        if ($idx < $#$reqs) {
            sleep $block->wait if $block->wait;
            check_error_log($block, $res, $dry_run, $rep);
        }
    }
    sleep $block->wait if $block->wait;
    check_error_log($block, $res, $dry_run, $rep);
}

1;
