package Test::Nginx::Util;

# Settings, nginx life cycle and the per-block driver of the KubeNova
# re-implementation of openresty's Test::Nginx (see Test::Nginx::Socket).
# The nginx process itself is managed by KubeNova::Nginx.

use strict;
use warnings;

use Exporter 'import';
use Carp qw(croak);
use File::Path qw(make_path);
use File::Spec ();
use IO::Socket::INET;
use List::Util qw(shuffle);
use Scalar::Util qw(looks_like_number);
use Time::HiRes qw(sleep time);
use Test::More ();

use KubeNova::Nginx;

our $VERSION = '0.33';

our $HaveLongString = eval { require Test::LongString; 1 };

# ---------------------------------------------------------------------------
# settings (same names and defaults as the real module)

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT}
                            || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NoRootLocation       = 0;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ForceRestartOnTest   = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoNginxManager       = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $RepeatEach           = 1;
our $NoLongString;
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $ConfigPreamble       = '';
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our @EnvToNginx;

our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

# hooks filled in by Test::Nginx::Socket
our ($RunTestHelper, $CheckErrorLog, $CheckShutdownErrorLog);

our (@BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers);
our ($NginxVersion, $PrevConfig, $PrevBlock, $RandPorts, $Nginx);
our $ErrLogFilePos = 0;

for my $unsupported (qw(TEST_NGINX_USE_HUP TEST_NGINX_USE_VALGRIND
                        TEST_NGINX_USE_STAP TEST_NGINX_CHECK_LEAK
                        TEST_NGINX_BENCHMARK TEST_NGINX_USE_HTTP2
                        TEST_NGINX_USE_HTTP3 TEST_NGINX_RANDOMIZE
                        TEST_NGINX_USE_RR))
{
    die "$unsupported is not supported by the KubeNova Test::Nginx runner\n"
        if $ENV{$unsupported};
}

our @EXPORT = qw(
    run_tests run_test repeat_each workers master_on master_off
    master_process_enabled no_shuffle log_level no_long_string
    no_root_location env_to_nginx add_block_preprocessor worker_connections
    timeout server_port server_port_for_client server_addr server_name
    server_root html_dir bail_out add_cleanup_handler add_test_cleanup_handler
    check_accum_error_log config_preamble no_nginx_manager is_str
    expand_env_in_text error_log_data access_log_data parse_time trim
    show_all_chars parse_headers sleep_time verbose get_pid_from_pidfile
    is_running
    $ServerPort $ServerPortForClient $ServRoot $PidFile $ConfFile
    $NginxVersion $RepeatEach $NoLongString $ServerAddr $ServerName
    $RunTestHelper $CheckErrorLog $CheckShutdownErrorLog $NoNginxManager
);

# ---------------------------------------------------------------------------
# setting functions

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub workers { return $Workers unless @_; $Workers = shift }
sub worker_connections {
    return $WorkerConnections unless @_;
    $WorkerConnections = shift;
}
sub log_level { return $LogLevel unless @_; $LogLevel = shift }
sub master_on  { $MasterProcessEnabled = 'on' }
sub master_off { $MasterProcessEnabled = 'off' }
sub master_process_enabled {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}
sub no_shuffle            { $NoShuffle = 1 }
sub no_long_string        { $NoLongString = 1 }
sub no_root_location      { $NoRootLocation = 1 }
sub no_nginx_manager      { $NoNginxManager = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub config_preamble       { $ConfigPreamble = shift }
sub timeout     { return $Timeout unless @_; $Timeout = shift }
sub server_port { return $ServerPort unless @_; $ServerPort = shift }
sub server_port_for_client {
    return $ServerPortForClient unless @_;
    $ServerPortForClient = shift;
}
sub server_addr { return $ServerAddr unless @_; $ServerAddr = shift }
sub server_name { return $ServerName unless @_; $ServerName = shift }
sub server_root { $ServRoot }
sub html_dir    { $HtmlDir }
sub sleep_time  { $TestNginxSleep }
sub verbose     { $Verbose }

sub env_to_nginx {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler        { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler   { unshift @TestCleanupHandlers, shift }

# ---------------------------------------------------------------------------
# small helpers

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str {
    my ($got, $expected, $desc) = @_;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    if ($NoLongString || !$HaveLongString) {
        return Test::More::is($got, $expected, $desc);
    }
    return Test::LongString::is_string($got, $expected, $desc);
}

sub parse_time {
    my ($tm) = @_;
    return $tm unless defined $tm;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
        $tm = $tm / 1000;
    } else {
        $tm =~ s/([^_a-zA-Z])s$/$1/;
    }
    return $tm;
}

sub trim {
    my ($s) = @_;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars {
    my ($s) = @_;
    $s =~ s/\n/\\n/gs;
    $s =~ s/\r/\\r/gs;
    $s =~ s/\t/\\t/gs;
    return $s;
}

# "Name: value" per line; "!Name" (or a line without a colon) means the
# header must be absent (value undef).
sub parse_headers {
    my ($s) = @_;
    my %headers;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $headers{$line} = undef;
        } else {
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            $headers{$key} = $val;
        }
    }
    return \%headers;
}

sub is_running { my ($pid) = @_; return kill 0, $pid }

sub get_pid_from_pidfile {
    my ($name) = @_;
    my $pid = _nginx()->pid;
    bail_out("$name - Failed to read a pid from $PidFile") unless $pid;
    return $pid;
}

sub _gen_rand_port {
    my ($used) = @_;
    for (1 .. 1000) {
        my $port = int(rand 63547) + 1988;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr, LocalPort => $port, Proto => 'tcp',
            Listen => 5, Reuse => 1,
        ) or next;
        close $sock;
        return $port;
    }
    return undef;
}

# $TEST_NGINX_FOO -> $ENV{TEST_NGINX_FOO} (bails out when unset);
# $TEST_NGINX_RAND_PORT_N -> a free port, stable within one block.
sub expand_env_in_text {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $rand_ports //= {};
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            $rand_ports->{$var} //= do {
                my $p = _gen_rand_port(\%used)
                    // bail_out("$name - Cannot find an available listening "
                                . "port number for $var.\n");
                $used{$p} = 1;
                $p;
            };
        } else {
            defined $ENV{$var}
                or bail_out("$name - No environment $var defined.\n");
            $ENV{$var};
        }
    }eg;
    return $text;
}

sub error_log_data {
    # the log phase may run after the response was sent
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return undef;
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or die "open $AccLogFile failed: $!";
    my @lines = <$in>;
    close $in;
    return \@lines;
}

# ---------------------------------------------------------------------------
# nginx life cycle

sub _nginx {
    $Nginx ||= KubeNova::Nginx->new(
        binary => $NginxBinary, servroot => $ServRoot, port => $ServerPort,
        server_addr => $ServerAddr, timeout => $Timeout,
        keep_running => $ENV{TEST_NGINX_NO_CLEAN},
    );
    return $Nginx->configure(
        workers            => $Workers,
        worker_connections => $WorkerConnections,
        master_process     => $MasterProcessEnabled,
        log_level          => $LogLevel,
        load_modules       => [grep { length } split /\s+/, $LoadModules // ''],
        env                => [@EnvToNginx],
        no_root_location   => $NoRootLocation,
        config_preamble    => $ConfigPreamble,
        server_name        => $ServerName,
        timeout            => $Timeout,
    );
}

sub cleanup_test {
    my ($block) = @_;
    $_->($block) for @TestCleanupHandlers;
}

sub cleanup {
    $_->() for @CleanupHandlers;
}

sub run_tests {
    srand($$ + time * 1000000);
    $NginxVersion = eval { _nginx()->version }
        // bail_out("Failed to get the version of nginx: $@");
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
        cleanup_test($block);
        $PrevBlock = $block;
    }
    cleanup();
}

sub check_prev_block_shutdown_error_log {
    my $block = $PrevBlock or return;
    return unless defined $block->shutdown_error_log
               || defined $block->no_shutdown_error_log;
    $CheckShutdownErrorLog->($block, $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0);
}

sub _write_user_files {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files or return;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) unless -d $dir;
        $body = expand_env_in_text($body // '', $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print {$out} $body;
        close $out;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or bail_out("Failed to run touch -t '$date' $path\n");
        }
    }
}

sub _canon_version { sprintf '%d.%03d%03d', @_ }

# Returns ($should_skip, $tests_to_skip, $reason) for skip_nginx/skip_eval.
sub _skip_spec {
    my ($block) = @_;
    my $name = $block->name;
    my ($skip, $count, $reason);

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($count, $reason) = ($1, 'skip_eval');
            my $code = $2;
            $skip = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }

    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                   (?:\s*:\s*(.*))?\s*$}x
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        $count = $1;
        my ($op, $ver) = ($2, _canon_version($3, $4, $5));
        $reason = $6 || "nginx version $op $3.$4.$5";
        $skip = 1 if eval "$NginxVersion $op $ver";
    }

    return ($skip, $count, $reason // 'various reasons');
}

sub _todo_spec {
    my ($block) = @_;
    my $todo = $block->todo;
    return () unless defined $todo;
    $todo =~ /^\s*(\d+)\s*:\s*(.*)/s
        or bail_out($block->name . " - Invalid --- todo spec: $todo");
    return ($1, $2);
}

our @UnsupportedSections = qw(
    stap stap_out stap_out_like stap_out_unlike tcp_listen tcp_reply
    tcp_query tcp_query_len udp_listen udp_reply udp_query http2 http3
    curl curl_options curl_protocol curl_error reload_fails skip_nginx2
    skip_openssl skip_slave todo_nginx response_body_json_sort charset
    post_setup_server_root_eval quic_max_idle_timeout
);

sub _check_supported {
    my ($block) = @_;
    for my $s (@UnsupportedSections) {
        bail_out($block->name . " - section '--- $s' is not supported by "
                 . "the KubeNova Test::Nginx runner")
            if exists $block->{$s};
    }
}

sub _missing_directive {
    open my $in, '<', $ErrLogFile or return 0;
    while (<$in>) {
        return $1 if /\[emerg\] \S+?: unknown directive "([^"]+)"/;
    }
    return 0;
}

# must_die: nginx has to refuse to start.
sub _run_must_die {
    my ($block, $dry_run) = @_;
    my $name = $block->name;
    my $must_die = $block->must_die;
    my $ngx = _nginx();

    for my $i (0 .. $RepeatEach - 1) {
        my $status = $ngx->spawn(
            suppress_stderr => defined $block->suppress_stderr);
        my $exit_code = $status >> 8;

        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $exit_code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, $dry_run, $i, 0);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $i)\n";
            for (1 .. 15) { last if -f $PidFile; sleep $TestNginxSleep }
            $ngx->stop;
        }
    }
}

# Stops the previous nginx and starts one for this block. Returns the
# dry-run reason (only with TEST_NGINX_IGNORE_MISSING_DIRECTIVES) or 0.
sub _restart_nginx {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my $ngx = _nginx();

    $ngx->stop if $ngx->is_running;
    check_prev_block_shutdown_error_log();

    eval { $ngx->setup_servroot; 1 } or bail_out("$name - $@");
    if (defined(my $code = $block->post_setup_server_root)) {
        eval $code;
        bail_out("$name - post_setup_server_root failed: $@") if $@;
    }
    _write_user_files($block, $rand_ports);
    $ngx->write_config(
        main_config => expand_env_in_text(
            join(' ', (map { "load_module $_;" } @{ $ngx->load_modules }),
                 $block->main_config // ''),
            $name, $rand_ports),
        http_config      => expand_env_in_text(scalar $block->http_config,
                                               $name, $rand_ports),
        post_main_config => expand_env_in_text(scalar $block->post_main_config,
                                               $name, $rand_ports),
        config           => $config,
        error_log_file   => expand_env_in_text(scalar $block->error_log_file,
                                               $name, $rand_ports),
        server_name      => scalar $block->server_name,
        log_level        => $block->log_level || $LogLevel,
        no_load_modules  => 1,
    );
    $ErrLogFilePos = 0;

    return 'must_die' if defined $block->must_die;

    my $ok = eval {
        $ngx->start(suppress_stderr => defined $block->suppress_stderr);
        1;
    };
    return 0 if $ok;

    my $err = $@;
    if ($ENV{TEST_NGINX_IGNORE_MISSING_DIRECTIVES}
        and my $directive = _missing_directive())
    {
        return "the lack of directive $directive";
    }
    bail_out("$name - Cannot start nginx: $err");
}

sub run_test {
    my ($block) = @_;
    return if defined $block->SKIP;

    my $name = $block->name;
    _check_supported($block);

    my $rand_ports = {};
    $RandPorts = $rand_ports;
    my $config = expand_env_in_text(scalar $block->config, $name, $rand_ports);

    my $should_restart = 0;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not "
                 . "get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?")
            if !$NoNginxManager && !defined $PrevConfig;
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
    } else {
        $should_restart = $ForceRestartOnTest || !defined $PrevConfig
                          || $config ne $PrevConfig;
    }

    my ($should_skip, $tests_to_skip, $skip_reason) = _skip_spec($block);
    my ($todo_count, $todo_reason) = _todo_spec($block);
    $tests_to_skip = $todo_count if defined $todo_count;

    my $dry_run = 0;
    if ($should_restart && !$should_skip) {
        $PrevConfig = $config;
        $dry_run = _restart_nginx($block, $config, $rand_ports);
        if ($dry_run eq 'must_die') {
            _run_must_die($block, 0);
            return;
        }
    }

    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        _write_user_files($block, $rand_ports) if $i > 1;

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        } elsif (defined $todo_count) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $tests_to_skip);
            }
        } else {
            $RunTestHelper->($block, $dry_run, $i - 1);
        }
    }
}

END {
    cleanup();
    if (!$ENV{TEST_NGINX_NO_CLEAN} && $Nginx) {
        local $?;
        $Nginx->stop;
    }
    check_prev_block_shutdown_error_log();
}

1;
