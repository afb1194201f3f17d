package Test::Nginx::Util;

# Minimal stand-in for openresty's Test::Nginx::Util (test-nginx), written
# from its documented behaviour.  Only used when the real module is not
# installed; see t/README.md for the supported subset.

use strict;
use warnings;

use base 'Exporter';

use Cwd ();
use File::Spec ();
use File::Path qw(make_path remove_tree);
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h SIGQUIT SIGTERM SIGKILL SIGINT);
use Time::HiRes qw(sleep time);
use Test::More ();
use Test::LongString ();

our @EXPORT = qw(
    env_to_nginx is_str run_tests run_test bail_out
    repeat_each no_shuffle no_long_string log_level
    workers worker_connections master_on master_off master_process_enabled
    config_preamble no_root_location server_name server_addr server_root
    html_dir server_port server_port_for_client timeout no_nginx_manager
    check_accum_error_log use_hup add_block_preprocessor add_cleanup_handler
    error_log_data access_log_data parse_headers parse_time trim sleep_time verbose
    get_nginx_version
    $RunTestHelper $CheckErrorLog $NoLongString $ServerPort
    $ServerPortForClient $ServerAddr $ServerName $ServRoot $ConfFile
    $PidFile $ErrLogFile $AccLogFile $RepeatEach $NginxVersion $NginxBinary
);

our $Verbose          = $ENV{TEST_NGINX_VERBOSE};
our $NoLongString;
our $RepeatEach       = 1;
our $NoShuffle        = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Timeout          = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep   = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LoadModules      = $ENV{TEST_NGINX_LOAD_MODULES};
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $ServerAddr       = '127.0.0.1';
our $ServerName       = 'localhost';
our $Workers          = 1;
our $WorkerConnections = 64;
our $LogLevel         = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled    = 'on';
our $ServerPort       = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NoRootLocation   = 0;
our $NoNginxManager   = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $ConfigPreamble   = '';
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our ($RunTestHelper, $CheckErrorLog);
our ($NginxVersion, $NginxRawVersion, $NginxV);
our $PrevConfig;
our $ErrLogFilePos = 0;
our $AccLogFilePos = 0;
our $NginxPid;
our $OwnerPid = $$;

our $NginxBinary = $ENV{TEST_NGINX_BINARY};
if (!$NginxBinary) {
    $NginxBinary = 'nginx';
    my $found;
    for my $dir (File::Spec->path) {
        if (-x "$dir/nginx") { $found = 1; last }
    }
    $NginxBinary = '/usr/sbin/nginx' if !$found && -x '/usr/sbin/nginx';
}

our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
$ENV{TEST_NGINX_HTML_DIR} ||= $HtmlDir;

sub verbose () { $Verbose }
sub sleep_time () { $TestNginxSleep }
sub no_long_string () { $NoLongString = 1 }
sub no_shuffle () { $NoShuffle = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub use_hup () { }    # accepted, ignored: we always restart
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub html_dir () { $HtmlDir }
sub server_root () { $ServRoot }
sub config_preamble ($) { $ConfigPreamble = shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }

sub _getset {
    my ($ref, @args) = @_;
    $$ref = $args[0] if @args;
    return $$ref;
}
sub repeat_each (@)            { _getset(\$RepeatEach, @_) }
sub timeout (@)                { _getset(\$Timeout, @_) }
sub log_level (@)              { _getset(\$LogLevel, @_) }
sub workers (@)                { _getset(\$Workers, @_) }
sub worker_connections (@)     { _getset(\$WorkerConnections, @_) }
sub server_name (@)            { _getset(\$ServerName, @_) }
sub server_addr (@)            { _getset(\$ServerAddr, @_) }
sub server_port (@)            { _getset(\$ServerPort, @_) }
sub server_port_for_client (@) { _getset(\$ServerPortForClient, @_) }

sub master_process_enabled (@) {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcessEnabled;
}

sub env_to_nginx (@) {
    Carp::croak("env_to_nginx: no arguments specified") if !@_;
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v")
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

sub parse_time ($) {
    my $tm = shift;
    return undef if !defined $tm;
    $tm =~ s/^\s+|\s+$//g;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
        $tm = $tm / 1000;
    } else {
        $tm =~ s/([^_a-zA-Z])s$/$1/;
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef if !defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

# "Name: value" lines; "!Name" means "must be absent" (value undef).
sub parse_headers ($) {
    my $s = shift;
    my %h;
    return \%h if !defined $s;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            $h{$line} = undef;
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            $h{$k} = defined $v ? $v : '';
        }
    }
    return \%h;
}

sub is_running ($) {
    my $pid = shift;
    return 0 if !$pid;
    waitpid($pid, WNOHANG);
    return 0 if !kill 0, $pid;
    # a daemonized nginx is not our child: once it exited it may linger as
    # a zombie until init reaps it
    if (open my $st, '<', "/proc/$pid/stat") {
        my $line = <$st> // '';
        close $st;
        return 0 if $line =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub stop_nginx ($) {
    my $why = shift;
    my $pid = $NginxPid;
    if (!$pid && -f $PidFile && open my $in, '<', $PidFile) {
        $pid = <$in>;
        close $in;
        chomp $pid if defined $pid;
    }
    undef $NginxPid;
    return if !$pid || $pid !~ /^\d+$/;
    kill SIGQUIT, $pid;
    my $left = $Timeout;
    while ($left > 0 && is_running($pid)) {
        sleep 0.02;
        $left -= 0.02;
    }
    if (is_running($pid)) {
        warn "$why - nginx $pid did not quit in ${Timeout}s; killing it\n";
        kill SIGTERM, $pid;
        sleep 0.2;
        kill SIGKILL, $pid if is_running($pid);
    }
    unlink $PidFile;
}

sub cleanup () {
    return if $$ != $OwnerPid;
    $_->() for @CleanupHandlers;
    stop_nginx('cleanup');
}

END {
    my $rc = $?;
    cleanup();
    $? = $rc;
}

for my $sig (qw(INT TERM HUP PIPE)) {
    $SIG{$sig} = sub {
        cleanup();
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
        exit 1;
    };
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub get_nginx_version () {
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("Failed to run \"$NginxBinary -V\" (set TEST_NGINX_BINARY): "
                 . ($out // ''));
    }
    $NginxV = $out;
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s) {
        $NginxRawVersion = "$1.$2.$3";
        return sprintf "%d.%03d%03d", $1, $2, $3;
    }
    bail_out("Failed to parse the output of \"$NginxBinary -V\": $out");
}

# The lines of a log written since the previous call (all of them with
# check_accum_error_log), after the pause that lets the log phase, which
# runs once the connection is closed, write them.
sub log_data_since ($$) {
    my ($file, $pos) = @_;
    sleep $TestNginxSleep * 3;
    open my $in, '<', $file or return [];
    seek $in, $$pos, 0 if !$CheckAccumErrLog && $$pos > 0;
    my @lines = <$in>;
    $$pos = tell($in) if !$CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub error_log_data () {
    return log_data_since($ErrLogFile, \$ErrLogFilePos);
}

sub access_log_data () {
    return log_data_since($AccLogFile, \$AccLogFilePos);
}

sub expand_env_in_text ($$) {
    my ($text, $name) = @_;
    return undef if !defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : bail_out("$name - No environment $1 defined.\n")
    }eg;
    return $text;
}

sub setup_server_root () {
    if (-d $ServRoot) {
        # only what we create: never wipe an arbitrary directory
        remove_tree($ConfDir, $HtmlDir, $LogDir, glob("$ServRoot/*_temp"),
                    glob("$ServRoot/*_cache"));
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        make_path($d) or bail_out("Failed to mkdir $d: $!");
    }
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub write_user_files ($) {
    my $block = shift;
    my $files = $block->user_files;
    return if !$files;
    my @list;
    if (!ref $files) {
        my ($fname, $body);
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)/) {
                push @list, [$fname, $body] if defined $fname;
                ($fname, $body) = ($1, '');
            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body] if defined $fname;
    } else {
        @list = @$files;
    }
    for my $f (@list) {
        my ($fname, $body) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) if !-d $dir;
        open my $out, '>', $path or bail_out("Cannot write $path: $!");
        binmode $out;
        print $out expand_env_in_text($body // '', $block->name);
        close $out;
    }
}

# Temp paths compiled into distribution binaries (/var/lib/nginx/...) are
# moved into servroot so that nginx starts without root and leaves no files
# behind; skipped when the test sets the directive itself.
sub temp_path_config ($) {
    my $all = shift;
    my $out = '';
    my %map = (
        'client-body' => 'client_body_temp_path',
        'proxy'       => 'proxy_temp_path',
        'fastcgi'     => 'fastcgi_temp_path',
        'uwsgi'       => 'uwsgi_temp_path',
        'scgi'        => 'scgi_temp_path',
    );
    for my $k (sort keys %map) {
        my $d = $map{$k};
        next if ($NginxV // '') !~ /--http-\Q$k\E-temp-path=/;
        next if $all =~ /\b\Q$d\E\b/;
        (my $dir = $d) =~ s/_path$//;
        $out .= "    $d $ServRoot/$dir;\n";
    }
    return $out;
}

sub write_config_file ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;
    my $http_config = expand_env_in_text($block->http_config, $name) // '';
    my $main_config = expand_env_in_text($block->main_config, $name) // '';
    my $post_main_config = expand_env_in_text($block->post_main_config, $name) // '';
    my $log_level = $block->log_level || $LogLevel;
    my $server_name = $block->server_name // $ServerName;
    $config //= '';

    my $modules = '';
    if ($LoadModules) {
        $modules = join '', map { "load_module $_;\n" } grep { length } split /\s+/, $LoadModules;
    }
    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;
    my $user = $> == 0 ? "user root;\n" : '';
    my $temp = temp_path_config("$http_config\n$config");
    my $root = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    open my $out, '>', $ConfFile or bail_out("Can't write $ConfFile: $!");
    print $out <<_EOC_;
${modules}worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$env$user
$main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;
$temp
$http_config

    server {
        listen          $ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_
    close $out;
}

sub start_nginx ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;
    stop_nginx($name);
    setup_server_root();
    write_user_files($block);
    write_config_file($block, $config);

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # keep startup messages out of the compiled-in error log (1.19.5+)
    push @cmd, '-e', $ErrLogFile if ($NginxVersion // 0) >= 1.019005;
    warn "starting: @cmd\n" if $Verbose;

    my ($waited, $i, $status) = (0, 0);
    while (1) {
        $status = system_quiet(@cmd);
        last if $status == 0;
        my $delay = 0.1 * ++$i;
        $delay = 1 if $delay > 1;
        # port still held by a previous instance: retry a little
        last if $waited >= 5 || !_addr_in_use();
        sleep $delay;
        $waited += $delay;
    }
    if ($status != 0) {
        my $tail = _tail($ErrLogFile, 20);
        bail_out("$name - Cannot start nginx using \"@cmd\" (status $status):\n$tail");
    }
    if ($DaemonEnabled eq 'on') {
        my $tries = 0;
        until (-s $PidFile || ++$tries > 200) { sleep 0.01 }
        if (open my $in, '<', $PidFile) {
            my $pid = <$in>;
            close $in;
            chomp $pid if defined $pid;
            $NginxPid = $pid if $pid && $pid =~ /^\d+$/;
        }
    }
    sleep $TestNginxSleep;
}

sub system_quiet (@) {
    my @cmd = @_;
    my $pid = fork();
    bail_out("fork failed: $!") if !defined $pid;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        exec @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return $?;
}

sub _addr_in_use () {
    my $t = _tail($ErrLogFile, 5);
    return $t =~ /Address already in use/;
}

sub _tail ($$) {
    my ($f, $n) = @_;
    open my $in, '<', $f or return '';
    my @l = <$in>;
    close $in;
    splice @l, 0, @l - $n if @l > $n;
    return join '', @l;
}

sub run_tests () {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    $ENV{TEST_NGINX_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks if !$NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', $0 . ' ' . $block->name);
        run_test($block);
    }
    cleanup();
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;

    my $config = expand_env_in_text($block->config, $name);
    my ($should_skip, $tests_to_skip, $skip_reason);

    if (defined(my $s = $block->skip_eval)) {
        if ($s =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($tests_to_skip, $skip_reason) = ($1, 'skip_eval');
            $should_skip = eval $2;
            bail_out("$name - skip_eval failed: $@") if $@;
        }
    }
    if (defined(my $s = $block->skip_nginx)) {
        if ($s =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/) {
            $tests_to_skip = $1;
            my $op = $2;
            my $ver = sprintf "%d.%03d%03d", $3, $4, $5;
            $skip_reason = $6 || "nginx version $op $3.$4.$5";
            $should_skip = 1 if eval "$NginxVersion $op $ver";
        } else {
            bail_out("$name - Invalid --- skip_nginx spec: $s");
        }
    }

    if (!$NoNginxManager && !$should_skip) {
        if (defined $config) {
            $PrevConfig = $config;
            start_nginx($block, $config);
        } elsif (!defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could not get previous one.");
        }
        # no config: keep using the running nginx, as the real one does
    }

    if ($block->init) {
        eval $block->init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    $AccLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
            next;
        }
        $RunTestHelper->($block, 0, $i);
    }
}

1;
