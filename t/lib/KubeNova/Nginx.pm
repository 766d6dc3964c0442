package KubeNova::Nginx;

use strict;
use warnings;

=head1 NAME

KubeNova::Nginx - manage a throw-away nginx instance for the KubeNova tests

=head1 SYNOPSIS

    use Test::More;
    use KubeNova::Nginx qw(http_get);

    my $ngx = KubeNova::Nginx->new;          # defaults from TEST_NGINX_* env
    $ngx->setup_servroot;
    $ngx->write_config(
        http_config => 'upstream pg { server 127.0.0.1:5432; }',
        config      => 'location = /t { return 200 "ok\n"; }',
    );
    $ngx->start;                             # dies if nginx cannot start

    my $off = $ngx->error_log_offset;
    my ($status, $headers, $body, $err) = $ngx->get('/t');
    is $status, 200;
    is $headers->{'content-type'}, 'text/plain';
    unlike scalar $ngx->error_log_since($off), qr/\[error\]/;

    $ngx->reload or diag $ngx->error_log_since($off);   # SIGHUP
    $ngx->stop;                              # also done at END

=head1 DESCRIPTION

One implementation of "run an nginx for a test" shared by the
Test::Nginx::Socket-compatible runner in F<t/lib/Test/Nginx/> and by plain
L<Test::More> tests that need a single nginx to survive several requests
(for example while PostgreSQL is restarted underneath it).

The generated F<nginx.conf> has the same layout as the one written by
openresty's Test::Nginx (main_config before C<http {}>, the test's
C<config> inside the default C<server> on C<127.0.0.1:$port> with
C<server_name localhost>, all temp paths inside the server root, C<user root>
when running as root, ...), so configuration snippets behave the same in both
kinds of tests.

Every instance that was started is stopped when the process exits (END block,
and on SIGINT/SIGTERM/SIGHUP if no handler was installed), unless
C<TEST_NGINX_NO_CLEAN> is set or C<< keep_running => 1 >> was given.

=head1 CONSTRUCTOR

=head2 new(%opt)

All options are optional; the defaults follow the Test::Nginx environment
variables:

    binary             TEST_NGINX_BINARY, else "nginx" from PATH
    servroot           TEST_NGINX_SERVROOT, else <cwd>/t/servroot
    port               TEST_NGINX_SERVER_PORT || TEST_NGINX_PORT || 1984
    server_addr        127.0.0.1 (address used by the HTTP helpers)
    server_name        localhost
    workers            1
    master_process     TEST_NGINX_MASTER_PROCESS, else off (bool or on/off)
    log_level          TEST_NGINX_LOG_LEVEL, else debug
    worker_connections 64
    load_modules       [split TEST_NGINX_LOAD_MODULES]  (.so paths)
    env                []   extra "env NAME;" lines (names or NAME=value)
    worker_user        TEST_NGINX_WORKER_USER (else "root" when run as root)
    event_type         TEST_NGINX_EVENT_TYPE ("use ...;" in events {})
    no_root_location   0    omit the default "location /"
    config_preamble    ''   text placed before the server's test config
    timeout            TEST_NGINX_TIMEOUT || 3   (seconds; start/stop/http)
    fast_shutdown      TEST_NGINX_FAST_SHUTDOWN  (stop with TERM, not QUIT)
    keep_running       TEST_NGINX_NO_CLEAN       (do not stop at END)

=head1 METHODS

=over

=item configure(%opt)

Changes constructor options later (same names); returns the object.

=item servroot, port, server_addr, binary, conf_file, error_log_file,
access_log_file, pid_file, html_dir, log_dir

Accessors (read-only).

=item setup_servroot()

Removes the previous server root (only the directories it creates itself:
conf, logs, html, cache, *_temp, *_cache; dies if anything else is left) and
recreates F<conf/>, F<logs/>, F<html/> and F<html/index.html>. Call it while
nginx is stopped.

=item render_config(%parts) / write_config(%parts)

Returns / writes F<conf/nginx.conf>. C<%parts>: C<main_config>,
C<http_config>, C<config> (inside the server block), C<post_main_config>,
and per-call overrides C<log_level>, C<error_log_file>, C<server_name>.
The C<load_module> lines for C<load_modules> are put in front of
C<main_config> (on the same line, as Test::Nginx does) unless
C<< no_load_modules => 1 >>.
No C<$TEST_NGINX_*> expansion is done here. write_config returns the path.

=item start(%opt)

Stops a stale nginx left behind in this server root (pid file), runs
C<nginx -p servroot/ -c conf/nginx.conf [-e logs/error.log]>, then waits
until the pid file names a live process and the port accepts connections.
Returns the master pid; dies with the tail of F<error.log> on failure.
C<< suppress_stderr => 1 >> sends nginx's stderr to /dev/null.

=item spawn(%opt)

Just runs the nginx command once and returns the wait status (C<$?>), for
"must die" checks. Same options as start(). Does not wait for anything.

=item pid() / is_running()

The pid from the pid file (undef if none) / whether that process is alive.

=item worker_pids()

Pids of the current processes whose parent is the master (empty list in
single-process mode).

=item stop(%opt)

QUIT (TERM with C<fast_shutdown>), wait up to C<timeout> seconds, then TERM
and finally KILL; leftover worker processes are killed too; the pid file is
removed. Returns true if a running nginx was found. C<< timeout => $s >>
overrides the wait.

=item reload(%opt)

Sends SIGHUP and waits (up to C<timeout>) until the reload took effect: new
workers exist and every old worker has exited or is "shutting down" (no
longer accepting). Returns 1 on success, 0 if nginx logged an C<[emerg]>
(config rejected; the old config stays active) or the wait timed out.
Needs C<< master_process => 1 >> (croaks otherwise): a single-process nginx
logs "reconfiguring" on SIGHUP but keeps serving the old configuration,
which is also why Test::Nginx forces master_on in its HUP mode.

=item error_log_offset() / error_log_since($offset)

Current size of F<error.log> / its contents from C<$offset> on (a string in
scalar context, a list of lines in list context).

=item wait_for_error_log($pattern, $offset, $timeout)

Polls F<error.log> (from C<$offset>) until a line matches C<$pattern>
(a regex, or a literal substring). Returns the matching line or undef.

=item get($path, %opt) / request(%opt)

C<http_get> / C<http_request> against this instance.

=item version()

nginx version as Test::Nginx compares it ("1.022001"); C<version_string> is
"1.22.1"; C<configure_output> is the output of C<nginx -V>.

=back

=head1 FUNCTIONS (exported on request, or all with C<:all>)

=over

=item http_request(%args) -> \%res

One HTTP/1.1 request on a fresh connection, read until the server closes
the connection (C<Connection: close> is sent) or C<timeout> seconds pass
without any I/O. C<%args>: C<port> (required), C<host> (127.0.0.1),
C<method> (GET), C<path> (/), C<headers> (hashref or arrayref of pairs),
C<body>, C<timeout> (3), C<host_header> (localhost).
C<%res>: C<status> (undef on failure), C<reason>, C<protocol>, C<headers>
(lower-cased names, repeated headers joined with ", "), C<header_list>
(C<[[name, value], ...]> as received), C<body> (chunked and Content-Length
handled), C<raw>, C<raw_headers>, C<timed_out>, C<error>.

=item http_get($port, $path, %args) -> ($status, \%headers, $body, $error)

Convenience wrapper around http_request (C<%args> as above).

=item http_send_raw(%args) -> \%out

Sends raw request bytes and collects the raw response. C<%args>: C<port>,
C<host>, C<packets> (arrayref of strings or C<< {value => ..., delay_before =>
$s} >>), C<middle_delay> (seconds between packets), C<timeout> (per I/O
event), C<shutdown> (shutdown(2) "how" after the last packet).
C<%out>: C<raw>, C<timed_out>, C<error>.

=item parse_http_response($raw, %opt) -> ($res, $raw_headers, $leftover, $error)

Parses one response from C<$raw> (C<< head => 1 >> for HEAD requests).
C<$res> as in http_request (undef if the chunked body is malformed,
C<$error> says why). C<$leftover> is the data after this response (for
pipelined requests). C<< $res->{truncated} >> is set if fewer bytes than
Content-Length arrived.

=back

=cut

use Carp qw(croak carp);
use Cwd ();
use Errno qw(EAGAIN EINTR EINPROGRESS EWOULDBLOCK);
use Exporter 'import';
use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h SIGQUIT SIGTERM SIGKILL SIGHUP);
use Scalar::Util qw(refaddr);
use Socket qw(SOL_SOCKET SO_ERROR);
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(http_request http_get http_send_raw parse_http_response);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my %Started;    # refaddr => instance, for every nginx started and not stopped

sub _env_bool {
    my ($v) = @_;
    return 0 if !defined $v || $v eq '' || $v eq '0' || lc($v) eq 'off';
    return 1;
}

sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        binary => $ENV{TEST_NGINX_BINARY} || 'nginx',
        servroot => $ENV{TEST_NGINX_SERVROOT}
            || File::Spec->rel2abs('t/servroot'),
        port => $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984,
        server_addr => '127.0.0.1',
        server_name => 'localhost',
        workers => 1,
        master_process => _env_bool($ENV{TEST_NGINX_MASTER_PROCESS}),
        log_level => $ENV{TEST_NGINX_LOG_LEVEL} || 'debug',
        worker_connections => 64,
        load_modules => [grep { length } split /\s+/,
                         $ENV{TEST_NGINX_LOAD_MODULES} // ''],
        env => [],
        worker_user => $ENV{TEST_NGINX_WORKER_USER},
        event_type => $ENV{TEST_NGINX_EVENT_TYPE},
        no_root_location => 0,
        config_preamble => '',
        timeout => $ENV{TEST_NGINX_TIMEOUT} || 3,
        fast_shutdown => _env_bool($ENV{TEST_NGINX_FAST_SHUTDOWN}),
        keep_running => _env_bool($ENV{TEST_NGINX_NO_CLEAN}),
    }, $class;
    $self->configure(%opt);

    $self->{servroot} = File::Spec->rel2abs($self->{servroot});
    $self->{servroot} =~ s{/+$}{};
    $self->{master_process} = _env_bool($self->{master_process});
    return $self;
}

sub configure {
    my ($self, %opt) = @_;
    for my $k (keys %opt) {
        croak "unknown option '$k'" unless exists $self->{$k};
        $self->{$k} = $opt{$k};
    }
    $self->{master_process} = _env_bool($self->{master_process});
    return $self;
}

for my $field (qw(servroot port server_addr server_name binary timeout
                  load_modules)) {
    no strict 'refs';
    *$field = sub { $_[0]{$field} };
}

sub log_dir         { "$_[0]{servroot}/logs" }
sub html_dir        { "$_[0]{servroot}/html" }
sub conf_file       { "$_[0]{servroot}/conf/nginx.conf" }
sub error_log_file  { "$_[0]{servroot}/logs/error.log" }
sub access_log_file { "$_[0]{servroot}/logs/access.log" }
sub pid_file        { "$_[0]{servroot}/logs/nginx.pid" }

# ---------------------------------------------------------------------------
# nginx binary facts

sub binary_path {
    my ($self) = @_;
    my $bin = $self->{binary};
    return (-f $bin && -x _) ? $bin : undef if $bin =~ m{/};
    for my $dir (split /:/, $ENV{PATH} // '') {
        next if $dir eq '';
        my $p = "$dir/$bin";
        return $p if -f $p && -x _;
    }
    return undef;
}

sub configure_output {
    my ($self) = @_;
    return $self->{_V} if defined $self->{_V};
    my $path = $self->binary_path
        or croak "cannot find the nginx executable '$self->{binary}'";
    my $out = `'$path' -V 2>&1`;
    croak "'$path -V' failed: $out" if $? != 0;
    return $self->{_V} = $out;
}

sub version_string {
    my ($self) = @_;
    my $out = $self->configure_output;
    $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}
        or croak "cannot parse the output of nginx -V: $out";
    return "$1.$2.$3";
}

sub version {
    my ($self) = @_;
    return sprintf '%d.%03d%03d', split /\./, $self->version_string;
}

# ---------------------------------------------------------------------------
# server root and configuration

sub setup_servroot {
    my ($self) = @_;
    my $root = $self->{servroot};

    _keep_error_log($root);

    if (-d $root) {
        # Only remove what we create ourselves, so that a wrong
        # TEST_NGINX_SERVROOT cannot wipe real data.
        remove_tree("$root/conf", "$root/logs", "$root/html", "$root/cache",
                    glob("$root/*_temp"), glob("$root/*_cache"));
        rmdir $root
            or croak "cannot remove $root (not empty?): $!";
    }

    make_path($root, $self->log_dir, $self->html_dir, "$root/conf");
    _write_file($self->html_dir . '/index.html',
        '<html><head><title>It works!</title></head>'
        . '<body>It works!</body></html>');
    return $root;
}

# KN_KEEP_ERROR_LOGS=<dir>: error logs are copied there before a server root
# is wiped, so that a whole run's logs can be scanned afterwards (the
# sanitizer run looks for reports in them).
my $Kept = 0;

sub _keep_error_log {
    my ($root) = @_;
    my $dir = $ENV{KN_KEEP_ERROR_LOGS} or return;
    my $log = "$root/logs/error.log";
    return unless -s $log;
    require File::Copy;
    my $name = sprintf '%s/%d-%03d.log', $dir, $$, ++$Kept;
    File::Copy::copy($log, $name) or carp "cannot keep $log: $!";
}

sub _write_file {
    my ($path, $data) = @_;
    open my $out, '>', $path or croak "cannot write $path: $!";
    binmode $out;
    print {$out} $data;
    close $out or croak "cannot close $path: $!";
}

sub _temp_path_lines {
    my ($self, $http_config) = @_;
    my $root = $self->{servroot};
    my $V = $self->configure_output;
    my @lines;

    push @lines, "client_body_temp_path $root/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @lines, "proxy_temp_path $root/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/;
    for my $mod (qw(fastcgi scgi uwsgi)) {
        push @lines, "${mod}_temp_path $root/${mod}_temp;"
            unless $V =~ /--without-http_${mod}_module/;
    }
    return join ' ', @lines;
}

sub _main_env_lines {
    my ($self) = @_;
    my @names = qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN
                   MOCKEAGAIN_WRITE_TIMEOUT_PATTERN LD_PRELOAD LD_LIBRARY_PATH
                   DYLD_INSERT_LIBRARIES DYLD_FORCE_FLAT_NAMESPACE);
    my $text = join '', map { "env $_;\n" } @names;
    for my $v (@{ $self->{env} }) {
        $text .= $v =~ /\s/ ? "env '$v';\n" : "env $v;\n";
    }
    return $text;
}

sub render_config {
    my ($self, %p) = @_;
    my $root        = $self->{servroot};
    my $http_config = $p{http_config} // '';
    my $config      = $p{config} // '';
    my $log_level   = $p{log_level} || $self->{log_level};
    my $err_log     = $p{error_log_file} || $self->error_log_file;
    my $server_name = $p{server_name} // $self->{server_name};
    my $master      = $self->{master_process} ? 'on' : 'off';
    my $temp_paths  = $self->_temp_path_lines($http_config);

    my @load = $p{no_load_modules} ? ()
             : map { "load_module $_;" } @{ $self->{load_modules} };
    my $main_config = join ' ', @load, $p{main_config} // '';

    my $conf = <<"_EOC_";
worker_processes  $self->{workers};
daemon on;
master_process $master;
error_log $err_log $log_level;
pid       ${\ $self->pid_file};
${\ $self->_main_env_lines}#env LUA_PATH;
#env LUA_CPATH;

$main_config

http {
    access_log ${\ $self->access_log_file}; $temp_paths
    #access_log off;

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $self->{port};
        #placeholder
        server_name     '$server_name';
        
        client_max_body_size 30M;
        #client_body_buffer_size 4k;

        # Begin preamble config...
$self->{config_preamble}
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

_EOC_

    if (!$self->{no_root_location}) {
        $conf .= <<"_EOC_";
        location / {
            root ${\ $self->html_dir};
            index index.html index.htm;
        }
_EOC_
    }

    my $use = $self->{event_type} ? "    use $self->{event_type};\n" : '';
    my $post_main_config = $p{post_main_config} // '';

    $conf .= <<"_EOC_";
    }
}

$post_main_config

#timer_resolution 100ms;

events {
    accept_mutex off;

    worker_connections  $self->{worker_connections};
$use}
env ASAN_OPTIONS;
env MOCKNOEAGAIN_VERBOSE;
env MOCKNOEAGAIN;
_EOC_

    if (defined $self->{worker_user}) {
        $conf .= "user $self->{worker_user};\n";
    } elsif ($> == 0) {
        $conf .= "user root;\n";
    }

    return $conf;
}

sub write_config {
    my ($self, %p) = @_;
    my $file = $self->conf_file;
    make_path("$self->{servroot}/conf") unless -d "$self->{servroot}/conf";
    _write_file($file, $self->render_config(%p));
    return $file;
}

# ---------------------------------------------------------------------------
# processes

sub _proc_state {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $stat = <$fh>;
    close $fh;
    # "pid (comm) state ppid ...", comm may itself contain ") "
    return undef unless defined $stat && $stat =~ /^\d+ \(.*\) (\S) (\d+)/s;
    return ($1, $2);    # state, ppid
}

# kill(0) is true for zombies; a daemonized nginx is re-parented to pid 1,
# which may not reap it inside a container.
sub _alive {
    my ($pid) = @_;
    return 0 unless defined $pid && $pid =~ /^\d+$/ && $pid > 1;
    return 0 unless kill 0, $pid;
    my ($state) = _proc_state($pid);
    return 0 if defined $state && ($state eq 'Z' || $state eq 'X');
    return 1;
}

sub _children_of {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my ($state, $parent) = _proc_state($pid);
        push @kids, $pid
            if defined $parent && $parent == $ppid && $state ne 'Z';
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
}

sub _is_nginx {
    my ($pid) = @_;
    return _cmdline($pid) =~ /nginx/;
}

sub _wait_gone {
    my ($pids, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my @left = grep { _alive($_) } @$pids;
        return 1 unless @left;
        return 0 if time > $deadline;
        waitpid($_, WNOHANG) for @left;
        sleep 0.02;
    }
}

sub pid {
    my ($self) = @_;
    open my $fh, '<', $self->pid_file or return undef;
    my $pid = <$fh>;
    close $fh;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

sub is_running {
    my ($self) = @_;
    return _alive($self->pid);
}

sub worker_pids {
    my ($self) = @_;
    my $pid = $self->pid;
    return () unless _alive($pid);
    return _children_of($pid);
}

sub _command {
    my ($self) = @_;
    my $bin = $self->binary_path
        or croak "cannot find the nginx executable '$self->{binary}'";
    my @cmd = ($bin, '-p', "$self->{servroot}/", '-c', $self->conf_file);
    # -e (startup error log) exists since nginx 1.19.5
    push @cmd, '-e', $self->error_log_file if $self->version >= 1.019005;
    return @cmd;
}

sub spawn {
    my ($self, %opt) = @_;
    my @cmd = $self->_command;
    my $pid = fork;
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null' if $opt{suppress_stderr};
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return $?;
}

sub _register {
    my ($self) = @_;
    $Started{ refaddr $self } = $self;
    _install_signal_handlers();
}

sub start {
    my ($self, %opt) = @_;
    $self->_stop_stale;
    _register($self);

    my $status = $self->spawn(%opt);
    if ($status != 0) {
        croak sprintf "nginx failed to start (exit code %d): %s\n%s\n%s",
            $status >> 8, $self->_last_emerg, join(' ', $self->_command),
            $self->_log_tail;
    }

    my $deadline = time + $self->{timeout} + 2;
    my $pid;
    until ($pid = $self->pid and _alive($pid)) {
        croak "nginx started but no live pid in " . $self->pid_file
            . ":\n" . $self->_log_tail if time > $deadline;
        sleep 0.01;
    }

    until (_port_accepts($self->{server_addr}, $self->{port})) {
        croak "nginx (pid $pid) does not accept connections on port "
            . "$self->{port}:\n" . $self->_log_tail if time > $deadline;
        croak "nginx (pid $pid) died:\n" . $self->_log_tail
            unless _alive($pid);
        sleep 0.01;
    }

    $self->{started_pid} = $pid;
    return $pid;
}

sub _port_accepts {
    my ($host, $port) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 1,
    ) or return 0;
    close $sock;
    return 1;
}

sub _log_tail {
    my ($self, $n) = @_;
    $n ||= 20;
    my @lines = _read_from($self->error_log_file, 0);
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

sub _last_emerg {
    my ($self) = @_;
    my ($line) = reverse grep { /\[(?:emerg|alert)\]/ }
                         _read_from($self->error_log_file, 0);
    return 'see error.log' unless defined $line;
    chomp $line;
    $line =~ s/^\S+ \S+ //;    # drop the timestamp
    return $line;
}

# A previous run (or TEST_NGINX_NO_CLEAN) may have left an nginx behind in
# this server root.
sub _stop_stale {
    my ($self) = @_;
    my $pid = $self->pid;
    if (_alive($pid) && _is_nginx($pid)) {
        $self->stop;
    } elsif (-e $self->pid_file) {
        unlink $self->pid_file;
    }
}

sub stop {
    my ($self, %opt) = @_;
    my $timeout = $opt{timeout} // $self->{timeout};
    my $pid = $self->pid // $self->{started_pid};
    delete $self->{started_pid};
    delete $Started{ refaddr $self };

    unless (_alive($pid)) {
        unlink $self->pid_file;
        return 0;
    }

    my @workers = _children_of($pid);
    kill($self->{fast_shutdown} ? SIGTERM : SIGQUIT, $pid);

    unless (_wait_gone([$pid], $timeout)) {
        warn "nginx $pid did not exit within ${timeout}s, sending TERM\n";
        kill SIGTERM, $pid;
        unless (_wait_gone([$pid], 1)) {
            warn "nginx $pid still alive, sending KILL\n";
            kill SIGKILL, $pid;
            _wait_gone([$pid], 1);
        }
    }

    my @left = grep { _alive($_) && _is_nginx($_) } @workers;
    if (@left) {
        kill SIGTERM, @left;
        unless (_wait_gone(\@left, 1)) {
            kill SIGKILL, @left;
            _wait_gone(\@left, 1);
        }
    }

    unlink $self->pid_file;
    return 1;
}

sub _cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    my $cmd = do { local $/; <$fh> } // '';
    close $fh;
    $cmd =~ tr/\0/ /;
    return $cmd;
}

# Old workers stop accepting once they got QUIT (their title then says
# "is shutting down"); they may linger while they finish open requests.
sub _old_workers_retired {
    my (@old) = @_;
    return !grep { _alive($_) && _cmdline($_) !~ /shutting down/ } @old;
}

sub reload {
    my ($self, %opt) = @_;
    croak "reload() needs master_process on: a single-process nginx keeps "
        . "serving the old configuration after SIGHUP"
        unless $self->{master_process};
    my $timeout = $opt{timeout} // $self->{timeout};
    my $pid = $self->pid;
    croak "nginx is not running" unless _alive($pid);

    my $offset = $self->error_log_offset;
    my @old = _children_of($pid);
    my %old = map { $_ => 1 } @old;
    kill SIGHUP, $pid or croak "cannot send HUP to $pid: $!";

    my $deadline = time + $timeout;
    while (time <= $deadline) {
        sleep 0.02;
        return 0 if $self->error_log_since($offset) =~ /\[emerg\]/;
        my @new = grep { !$old{$_} } _children_of($pid);
        return 1 if @new && _old_workers_retired(@old);
    }
    return 0;
}

sub _stop_all {
    for my $ngx (values %Started) {
        next if $ngx->{keep_running};
        eval { $ngx->stop; 1 } or warn $@;
    }
}

my $handlers_installed;
sub _install_signal_handlers {
    return if $handlers_installed++;
    my %num = (HUP => 1, INT => 2, TERM => 15);
    for my $sig (keys %num) {
        my $cur = $SIG{$sig};
        next if defined $cur && $cur ne '' && $cur ne 'DEFAULT';
        $SIG{$sig} = sub { _stop_all(); exit(128 + $num{$sig}) };
    }
}

END {
    local ($?, $!, $@);
    _stop_all();
}

# ---------------------------------------------------------------------------
# logs

sub _read_from {
    my ($file, $offset) = @_;
    open my $fh, '<', $file or return wantarray ? () : '';
    binmode $fh;
    seek $fh, $offset, 0 if $offset;
    my @lines = <$fh>;
    close $fh;
    return wantarray ? @lines : join '', @lines;
}

sub error_log_offset {
    my ($self) = @_;
    return -s $self->error_log_file || 0;
}

sub error_log_since {
    my ($self, $offset) = @_;
    return _read_from($self->error_log_file, $offset // 0);
}

sub wait_for_error_log {
    my ($self, $pat, $offset, $timeout) = @_;
    $timeout //= $self->{timeout};
    my $re = ref $pat ? $pat : qr/\Q$pat\E/;
    my $deadline = time + $timeout;
    while (1) {
        for my $line ($self->error_log_since($offset)) {
            return $line if $line =~ $re;
        }
        return undef if time > $deadline;
        sleep 0.02;
    }
}

sub get {
    my ($self, $path, %opt) = @_;
    return http_get($self->{port}, $path,
                    host => $self->{server_addr}, timeout => $self->{timeout},
                    %opt);
}

sub request {
    my ($self, %opt) = @_;
    return http_request(port => $self->{port}, host => $self->{server_addr},
                        timeout => $self->{timeout}, %opt);
}

# ---------------------------------------------------------------------------
# HTTP client

sub _connect {
    my ($host, $port, $timeout) = @_;
    my $deadline = time + $timeout;
    my $err;
    while (1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
            Timeout => $timeout,
        );
        if ($sock) {
            $sock->blocking(0);
            return ($sock, undef);
        }
        $err = "cannot connect to $host:$port: $!";
        return (undef, $err) if time > $deadline;
        sleep 0.05;
    }
}

# Writes the packets and reads until EOF; $timeout applies to every wait
# for I/O, as in Test::Nginx.
sub http_send_raw {
    my (%a) = @_;
    my $timeout = $a{timeout} // 3;
    my %out = (raw => '', timed_out => 0, error => undef);

    my ($sock, $err) = _connect($a{host} // '127.0.0.1', $a{port}, $timeout);
    if (!$sock) {
        $out{error} = $err;
        return \%out;
    }

    my @packets = map { ref $_ ? {%$_} : { value => $_ } } @{ $a{packets} };
    my $cur = shift @packets;
    my $buf = $cur ? $cur->{value} // '' : '';
    my $off = 0;
    my $writing = defined $cur;

    local $SIG{PIPE} = 'IGNORE';    # the server may close while we write
    my $sel = IO::Select->new($sock);
    while (1) {
        $! = 0;
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            next if $! == EINTR;
            $out{timed_out} = 1;
            last;
        }

        if ($w && @$w) {
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $out{error} = "write failed: $!";
                $writing = 0;
            } else {
                $off += $n;
            }

            while ($writing && $off >= length $buf) {
                $cur = shift @packets;
                if (!$cur) {
                    $writing = 0;
                    shutdown($sock, $a{shutdown} =~ /^\d+$/ ? $a{shutdown} : 1)
                        if defined $a{shutdown};
                    last;
                }
                my $delay = $cur->{delay_before} // $a{middle_delay};
                sleep $delay if $delay;
                ($buf, $off) = ($cur->{value} // '', 0);
            }
        }

        if ($r && @$r) {
            my $n = sysread($sock, my $chunk, 16384);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $out{error} = "read failed: $!";
                last;
            }
            last if $n == 0;
            $out{raw} .= $chunk;
        }
    }

    close $sock;
    return \%out;
}

sub _parse_head {
    my ($head) = @_;
    my @lines = split /\r?\n/, $head;
    my $status_line = shift(@lines) // '';
    my %res = (headers => {}, header_list => []);

    if ($status_line =~ m{^(HTTP/\d+(?:\.\d+)?)[ \t]+(\S+)(?:[ \t]+(.*))?$}) {
        @res{qw(protocol status reason)} = ($1, $2, $3 // '');
        $res{status} = undef unless $res{status} =~ /^\d+$/;
    }

    for my $line (@lines) {
        if ($line =~ /^[ \t]+(.*)/ && @{ $res{header_list} }) {
            $res{header_list}[-1][1] .= " $1";    # obsolete line folding
        } elsif ($line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            push @{ $res{header_list} }, [$1, $2];
        }
    }
    for my $h (@{ $res{header_list} }) {
        my $k = lc $h->[0];
        $res{headers}{$k} = exists $res{headers}{$k}
            ? "$res{headers}{$k}, $h->[1]" : $h->[1];
    }
    return \%res;
}

sub _dechunk {
    my ($raw, $trailers) = @_;
    my ($body, $pos) = ('', 0);
    while (1) {
        pos($raw) = $pos;
        $raw =~ /\G[ \t]*([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r\n/gc
            or return (undef, undef,
                       length($raw) > $pos ? "invalid chunked body received: "
                                             . substr($raw, $pos)
                                           : "no last chunk found");
        my $size = hex $1;
        $pos = pos($raw);
        if ($size == 0) {
            # optional trailer fields, then the final CRLF
            while ($raw =~ /\G([^\r\n]+)\r\n/gc) {
                push @$trailers, $1;
            }
            $raw =~ /\G\r\n/gc
                or return (undef, undef,
                           "invalid chunked data received (expected CRLF)");
            return ($body, substr($raw, pos($raw)), undef);
        }
        return (undef, undef, "invalid chunked data received "
                              . "(not enough octets for the data section)")
            if length($raw) - $pos < $size;
        $body .= substr($raw, $pos, $size);
        $pos += $size;
        return (undef, undef, "invalid chunked data received (expected CRLF)")
            unless substr($raw, $pos, 2) eq "\r\n";
        $pos += 2;
    }
}

sub parse_http_response {
    my ($raw, %opt) = @_;
    $raw //= '';

    my ($head, $rest, $raw_headers);
    if ($raw =~ /\A(.*?\r?\n)\r?\n(.*)\z/s) {
        ($head, $rest) = ($1, $2);
        $raw_headers = $raw =~ /\A(.*?\r\n)\r\n/s ? $1 : $head;
    } else {
        ($head, $rest, $raw_headers) = ($raw, '', '');
    }

    my $res = _parse_head($head);
    $res->{raw} = $raw;
    $res->{raw_headers} = $raw_headers;
    $res->{body} = $rest;
    my $status = $res->{status};
    my $te  = $res->{headers}{'transfer-encoding'};
    my $len = $res->{headers}{'content-length'};
    my $leftover;

    return ($res, $raw_headers, undef, undef)
        if defined $status && ($status == 304 || $status == 101);

    if (defined $te && $te eq 'chunked') {
        my ($body, $left, $err) = _dechunk($rest, $res->{trailers} = []);
        return (undef, $raw_headers, undef, $err) if defined $err;
        $res->{body} = $body;
        $leftover = $left if length $left;
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length($rest) < $len) {
            $res->{truncated} = 1 unless $opt{head};
        } elsif (length($rest) > $len) {
            $res->{body} = substr $rest, 0, $len;
            $leftover = substr $rest, $len;
        }
    }
    return ($res, $raw_headers, $leftover, undef);
}

sub _header_pairs {
    my ($h) = @_;
    return () unless $h;
    return map { [$_, $h->{$_}] } sort keys %$h if ref $h eq 'HASH';
    my @pairs;
    for (my $i = 0; $i < @$h; $i += 2) {
        push @pairs, [$h->[$i], $h->[$i + 1]];
    }
    return @pairs;
}

sub http_request {
    my (%a) = @_;
    croak "http_request: port is required" unless $a{port};
    my $method = $a{method} // 'GET';
    my $path   = $a{path} // '/';
    my @hdrs   = _header_pairs($a{headers});
    my %have   = map { lc($_->[0]) => 1 } @hdrs;

    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "Host: " . ($a{host_header} // 'localhost') . "\r\n"
        unless $have{host};
    $req .= "Connection: close\r\n" unless $have{connection};
    $req .= "$_->[0]: $_->[1]\r\n" for @hdrs;
    if (defined $a{body} && !$have{'content-length'}
        && !$have{'transfer-encoding'})
    {
        $req .= "Content-Length: " . length($a{body}) . "\r\n";
    }
    $req .= "\r\n" . ($a{body} // '');

    my $out = http_send_raw(
        host => $a{host} // '127.0.0.1', port => $a{port},
        packets => [$req], timeout => $a{timeout} // 3,
    );

    my ($res, undef, undef, $err) =
        parse_http_response($out->{raw}, head => $method eq 'HEAD');
    $res //= { headers => {}, header_list => [], raw => $out->{raw} };
    $res->{timed_out} = $out->{timed_out};
    $res->{error} = $out->{error} // $err;
    $res->{error} //= 'timed out' if $out->{timed_out};
    $res->{error} //= 'empty response' if $out->{raw} eq '';
    return $res;
}

sub http_get {
    my ($port, $path, %a) = @_;
    my $res = http_request(%a, port => $port, path => $path, method => 'GET');
    return ($res->{status}, $res->{headers}, $res->{body}, $res->{error});
}

1;
