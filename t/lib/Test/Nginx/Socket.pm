package Test::Nginx::Socket;

use v5.10.1;
use strict;
use warnings;

# lower-case -base: inherit from Test::Base without Spiffy's source filter
use Test::Base -base;

use Digest::MD5 ();
use Digest::SHA ();
use Time::HiRes qw(sleep);

use KubeNova::Nginx qw(http_send_raw parse_http_response);
use Test::Nginx::Util;

our $VERSION = '0.33';

=head1 NAME

Test::Nginx::Socket - KubeNova's subset of openresty's Test::Nginx::Socket

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';
    # or: use Test::Nginx::Socket; plan tests => repeat_each() * (blocks() * 2);

    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t { return 200 "hello\n"; }
    --- request
    GET /t
    --- response_body
    hello

=head1 DESCRIPTION

A re-implementation (not a copy) of the part of openresty's
L<Test::Nginx::Socket> (test-nginx 0.33) that the KubeNova test suite uses,
built on Debian's L<Test::Base>. Test files written for it run unchanged
under the real module; the data-section format, the generated nginx.conf,
the environment variables and the number of assertions per block are the
same. Sections and environment variables of the real module that are not
implemented make the run bail out instead of being ignored.

Supported sections: config, http_config, main_config, post_main_config,
server_name, init, post_setup_server_root, user_files, request (plain, eval:
string, array of requests, array of packets with C<delay_before>),
pipelined_requests, raw_request, raw_request_middle_delay, more_headers (also
an array per request), error_code, error_code_like, response_body (plain,
eval string or regex), response_body_eval, response_body_like,
response_body_unlike, response_body_filters, response_headers (C<!Name> for
absence), response_headers_like, raw_response_headers_like/unlike,
error_log, no_error_log, grep_error_log/grep_error_log_out, access_log,
no_access_log, shutdown_error_log, no_shutdown_error_log, log_level,
error_log_file, timeout, abort, shutdown, wait, ignore_response, http09,
must_die, suppress_stderr, server_addr_for_client, skip_nginx, skip_eval,
todo, write_resp_body_file, and Test::Base's ONLY, SKIP and LAST.

The nginx process is driven by L<KubeNova::Nginx>.

=cut

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location server_name
    server_addr server_root html_dir server_port server_port_for_client
    timeout no_nginx_manager check_accum_error_log add_block_preprocessor
    bail_out add_test_cleanup_handler add_cleanup_handler
    add_response_body_check
);

$RunTestHelper         = \&run_test_helper;
$CheckErrorLog         = \&check_error_log;
$CheckShutdownErrorLog = \&check_shutdown_error_log;

our @ResponseBodyChecks;

sub add_response_body_check { push @ResponseBodyChecks, shift }

sub _no_ending { Test::More->builder->no_ending(1) }

# ---------------------------------------------------------------------------
# building requests

sub parse_more_headers {
    my ($in) = @_;
    my ($out, $is_chunked) = ('');
    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*\#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turns the "METHOD [URL [VERSION]]\nbody" spec (possibly split into
# packets) into a full HTTP request: request line, Host, Connection,
# more_headers, Content-Length. Packet boundaries inside the body are kept.
sub build_request {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;
    my $spec = join '', @$packets;

    $spec =~ /\A([^\n]*\n?)/;
    my $first = $1;
    $first =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my ($lead, $meth, $url, $ver) = ($1, $2, $4 // '/', $6 // 'HTTP/1.1');

    my $content = substr $spec, length $first;
    my ($trim_lead, $len_header) = (0, '');
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ /^(\s*)/;
        $trim_lead = length $1;
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n"
        if $more_headers !~ /(?:^|\n)Connection/msi;
    my $prefix = "$meth $url $ver\r\n$headers$more_headers$len_header\r\n";

    # map the original packet boundaries onto the new request
    my (@cuts, $pos);
    $pos = 0;
    for my $p (@$packets[0 .. $#$packets - 1]) {
        $pos += length $p;
        my $c = $pos - length($first) - $trim_lead;
        $c = 0 if $c < 0;
        $c = length $content if $c > length $content;
        push @cuts, length($prefix) + $c;
    }

    my $full = $prefix . $content;
    my ($from, @out) = (0);
    for my $cut (@cuts, length $full) {
        push @out, substr $full, $from, $cut - $from;
        $from = $cut;
    }
    return \@out;
}

sub _headers_for {
    my ($name, $more_headers, $i) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $hdr = $more_headers->[$i];
        bail_out("$name - --- more_headers lacks data for the request $i")
            unless defined $hdr;
        return parse_more_headers($hdr);
    }
    return parse_more_headers($more_headers);
}

sub _clean_request_spec {
    my ($request) = @_;
    return $request unless defined $request && !ref $request;
    1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
    return $request;
}

# Returns a list of requests; each is an arrayref of
# { value => $bytes, delay_before => $s } packets.
sub get_req_from_block {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        my @bits = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        return ([map { { value => $_ } } @bits]);
    }

    my $more_headers = $block->more_headers // '';

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $req = expand_env_in_text($reqs->[$i], $name,
                                         $Test::Nginx::Util::RandPorts);
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);
            $all .= build_request($name, $hdr, $chunked, $conn, [$req])->[0];
        }
        return ([{ value => $all }]);
    }

    my $request = defined $block->request_eval
                ? eval $block->request_eval
                : _clean_request_spec($block->request);
    bail_out("$name - request empty") unless defined $request;

    my @specs = ref $request eq 'ARRAY' ? @$request : ($request);
    bail_out("$name - invalid --- request: MUST be string or array of "
             . "requests") if ref $request && ref $request ne 'ARRAY';

    my @out;
    for my $i (0 .. $#specs) {
        my $spec = $specs[$i];
        my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);
        my @packets = ref $spec eq 'ARRAY' ? @$spec : ($spec);
        for my $p (@packets) {
            bail_out("$name - Invalid syntax. $p should be a string or hash "
                     . "with value.") if ref $p && ref $p ne 'HASH';
        }
        my $bytes = build_request($name, $hdr, $chunked, 'close',
                                  [map { ref $_ ? $_->{value} : $_ } @packets]);
        push @out, [map {
            ref $packets[$_] ? { %{ $packets[$_] }, value => $bytes->[$_] }
                             : { value => $bytes->[$_] }
        } 0 .. $#packets];
    }
    return @out;
}

# ---------------------------------------------------------------------------
# sending

sub send_request {
    my ($packets, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my $all = join '', map { $_->{value} } @$packets;
    my $head_req = $all =~ /^\s*HEAD\s+/ ? 1 : 0;
    my $addr = $block->server_addr_for_client // $ServerAddr;

    my $out = http_send_raw(
        host => $addr, port => $ServerPortForClient, packets => $packets,
        middle_delay => $middle_delay, timeout => $timeout,
        shutdown => scalar $block->shutdown,
    );

    if ($out->{error} && $out->{error} =~ /^cannot connect/) {
        _no_ending();
        fail("$name - Can't connect to $addr:$ServerPortForClient: "
             . "$out->{error} (aborted)\n");
        return (undef, $head_req);
    }
    if ($out->{timed_out}) {
        if (defined $block->abort) {
            sleep 0.005;
        } else {
            _no_ending();
            fail("ERROR: client socket timed out - $name\n");
        }
    }
    if ($out->{error}) {
        warn "$name - $out->{error}\n";
        $out->{raw} = $out->{error} if $out->{raw} eq '';
    }
    return ($out->{raw}, $head_req);
}

sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my ($res, $raw_headers, $left, $err) =
        parse_http_response($raw, head => $head_req);
    if (defined $err) {
        _no_ending();
        fail("$name - $err");
        return;
    }
    if ($res->{truncated}) {
        warn "WARNING: $name - response body truncated: ",
             "$res->{headers}{'content-length'} expected, but got ",
             length $res->{body}, "\n";
    }
    return ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# the per-request driver

sub run_test_helper {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;

    my @reqs = get_req_from_block($block);
    bail_out("$name - request empty") unless @reqs;

    my $timeout = parse_time($block->timeout) // timeout();
    my ($res, $need_array, $n);
    my $req_idx = 0;

    for my $one_req (@reqs) {
        my ($raw, $head_req) = $dry_run
            ? ("200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 0)
            : send_request($one_req, scalar $block->raw_request_middle_delay,
                           $timeout, $block);

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @reqs > 1;
        }

        while (1) {
            $raw //= '';
            my ($raw_headers, $left);
            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = { status => 200, headers => {}, body => $raw };
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left) =
                        parse_response($name, $raw, $head_req);
                }
            }

            if (!$n) {
                if (defined $left && length $left) {
                    $left =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"$left\"\n";
                }
            } else {
                $raw = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                my @args = ($block, $res, $dry_run, $req_idx, $need_array);
                check_error_code(@args);
                check_raw_response_headers($block, $raw_headers, $dry_run,
                                           $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $dry_run,
                                       $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $dry_run, $req_idx,
                                    $repeated_req_idx, $need_array);
            }

            if ($n || $req_idx < $#reqs) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $repeated_req_idx,
                                $need_array);
                check_access_log($block, $dry_run, $repeated_req_idx)
                    unless defined $block->ignore_response;
            }

            $req_idx++;
            last unless $n;
        }
    }

    sleep $block->wait if $block->wait;
    check_error_log($block, $res, $dry_run, $repeated_req_idx, $need_array);
    check_access_log($block, $dry_run, $repeated_req_idx)
        unless defined $block->ignore_response;
}

# ---------------------------------------------------------------------------
# checks

sub get_indexed_value {
    my ($name, $value, $req_idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$req_idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub _status { my ($res) = @_; return ($res && $res->{status}) || '' }

sub _header_value {
    my ($res, $key) = @_;
    return undef unless $res;
    my $k = lc $key;
    $k =~ tr/_/-/ unless $k =~ s/^://;    # as HTTP::Headers does
    return $res->{headers}{$k};
}

sub check_error_code {
    my ($block, $res, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    SKIP: {
        skip "$name - tests skipped due to $dry_run", 1 if $dry_run;
        if (defined $block->error_code_like) {
            my $val = get_indexed_value($name, $block->error_code_like,
                                        $req_idx, $need_array);
            like(_status($res), qr/$val/sm, "$name - status code ok");
        } elsif (defined $block->error_code) {
            is(_status($res),
               get_indexed_value($name, $block->error_code, $req_idx,
                                 $need_array),
               "$name - status code ok");
        } else {
            is(_status($res), 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    for my $type (qw(like unlike)) {
        my $section = "raw_response_headers_$type";
        my $spec = $block->$section;
        next unless defined $spec;
        SKIP: {
            skip "$name - raw_response_headers_$type - tests skipped due to "
                 . $dry_run, 1 if $dry_run;
            my $re = get_indexed_value($name, $spec, $req_idx, $need_array);
            my $cmp = $type eq 'like' ? \&like : \&unlike;
            $cmp->($raw_headers, qr/$re/s, "$name - raw resp headers $type");
        }
    }
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        my $headers = parse_headers(get_indexed_value(
            $name, $block->response_headers, $req_idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key};
            SKIP: {
                skip "$name - response_headers - tests skipped due to "
                     . $dry_run, 1 if $dry_run;
                if (!defined $val) {
                    unlike($raw_headers // '', qr/^\s*\Q$key\E\s*:/ms,
                           "$name - header $key not present in the raw "
                           . "headers");
                    next;
                }
                $val =~ s/\$ServerPort\b/$ServerPort/g;
                $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
                is(_header_value($res, $key) // '', $val,
                   "$name - header $key ok");
            }
        }
    } elsif (defined $block->response_headers_like) {
        my $headers = parse_headers(get_indexed_value(
            $name, $block->response_headers_like, $req_idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key} // '';
            SKIP: {
                skip "$name - response_headers_like - tests skipped due to "
                     . $dry_run, 1 if $dry_run;
                like(_header_value($res, $key) // '', qr/^$val$/,
                     "$name - header $key like ok");
            }
        }
    }
}

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _run_body_filter {
    my ($name, $filter, $content) = @_;
    return $filter->($content) if ref $filter eq 'CODE';
    bail_out("$name - the --- response_body_filters section only supports "
             . "subroutine reference values and string values") if ref $filter;
    my $f = $BodyFilters{$filter}
        or bail_out("$name - unknown filter, \"$filter\", specified in the "
                    . "--- response_body_filters section");
    return $f->($content);
}

sub transform_response_body {
    my ($block, $res, $req_idx) = @_;
    return unless $res && defined $res->{body};
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$req_idx]
            // bail_out("$name - the --- response_body_filters "
                        . "two-dimensional array does not match the "
                        . "request($req_idx)");
    }

    my $body = $res->{body};
    $body = _run_body_filter($name, $_, $body) for @$filters;
    $res->{body} = $body;
}

sub check_response_body {
    my ($block, $res, $dry_run, $req_idx, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->{body} : undef;

    if (defined(my $file = $block->write_resp_body_file) && $res) {
        open my $out, '>', $file
            or bail_out("$name - failed to write to file '$file': $!");
        print {$out} $content // '';
        close $out;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $expected;
        if ($block->response_body_eval) {
            diag "$name - response_body_eval is DEPRECATED. Use response_body "
                 . "eval instead.";
            $expected = eval get_indexed_value($name, $block->response_body_eval,
                                               $req_idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body,
                                          $req_idx, $need_array);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name,
                                           $Test::Nginx::Util::RandPorts);
        }

        my $desc = "$name - response_body - response is expected "
                   . "(repeated req $repeated_req_idx, req $req_idx)";
        SKIP: {
            skip "$name - response_body - tests skipped due to $dry_run", 1
                if $dry_run;
            if (ref $expected) {
                like($content, $expected,
                     "$name - response_body - like (repeated req "
                     . "$repeated_req_idx, req $req_idx)");
            } else {
                is_str($content, $expected, $desc);
            }
        }
    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $patterns = $type eq 'like' ? $block->response_body_like
                                       : $block->response_body_unlike;
        my $pat = get_indexed_value($name, $patterns, $req_idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        my $cmp = $type eq 'like' ? \&like : \&unlike;
        SKIP: {
            skip "$name - response_body_$type - tests skipped due to "
                 . $dry_run, 1 if $dry_run;
            $cmp->($content, qr/$pat/s,
                   "$name - response_body_$type - response is expected "
                   . "($summary)");
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $content, $req_idx, $repeated_req_idx, $dry_run);
    }
}

sub fmt_str {
    my ($str) = @_;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

# plain text: one literal substring per line; eval: a regex, or an array
# of literal strings and regexes
sub _patterns {
    my ($pats) = @_;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats;
    chomp $pats;
    return [split /\n+/, $pats];
}

sub _matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

sub _contains {
    my ($val, $pat) = @_;
    return 0 unless defined $val;
    return grep { _contains($_, $pat) } @$val if ref $val eq 'ARRAY';
    return index("$val", $pat) >= 0;
}

# One test per pattern: pass if some line matches.
sub _check_log_has {
    my ($name, $what, $pats, $lines, $dry_run, $suffix) = @_;
    my @left = @{ _patterns($pats) };
    for my $line (@$lines) {
        for my $pat (@left) {
            next unless defined $pat && _matches($line, $pat);
            SKIP: {
                skip "$name - $what - tests skipped due to $dry_run", 1
                    if $dry_run;
                pass("$name - pattern \"$pat\" matches a line in $what$suffix");
            }
            undef $pat;
        }
    }
    for my $pat (grep { defined } @left) {
        SKIP: {
            skip "$name - $what - tests skipped due to $dry_run", 1 if $dry_run;
            fail("$name - pattern \"$pat\" should match a line in $what$suffix");
        }
    }
}

# One test per pattern: pass if no line matches; one failure per matching
# line otherwise (as the real module, which then disables the plan check).
sub _check_log_lacks {
    my ($name, $what, $pats, $lines, $dry_run, $suffix) = @_;
    my @pats = @{ _patterns($pats) };
    my %found;
    for my $i (0 .. $#$lines) {
        my $line = $lines->[$i];
        for my $pat (grep { defined } @pats) {
            next unless _matches($line, $pat);
            _no_ending() if $found{$pat}++;
            SKIP: {
                skip "$name - no_$what - tests skipped due to $dry_run", 1
                    if $dry_run;
                my $end = $i + 10 < $#$lines ? $i + 10 : $#$lines;
                my @more = @$lines[$i + 1 .. $end - 1];
                fail("$name - pattern \"" . fmt_str($pat) . "\" should not "
                     . "match any line in $what but matches line \""
                     . fmt_str($line) . "\"$suffix\n" . join '', @more);
            }
        }
    }
    for my $pat (grep { defined && !$found{$_} } @pats) {
        SKIP: {
            skip "$name - no_$what - tests skipped due to $dry_run", 1
                if $dry_run;
            pass("$name - pattern \"" . fmt_str($pat) . "\" does not match "
                 . "a line in $what$suffix");
        }
    }
}

sub _check_grep_error_log {
    my ($block, $lines, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;
    my $grep = $block->grep_error_log;
    if (!defined $grep) {
        bail_out("$name - No --- grep_error_log defined but "
                 . "--- grep_error_log_out is defined")
            if defined $block->grep_error_log_out;
        return;
    }
    $grep = $grep->[$repeated_req_idx] if ref $grep eq 'ARRAY';

    my $expected = $block->grep_error_log_out;
    bail_out("$name - No --- grep_error_log_out defined but "
             . "--- grep_error_log is defined") unless defined $expected;
    $expected = expand_env_in_text($expected, $name,
                                   $Test::Nginx::Util::RandPorts);
    $expected = $expected->[$repeated_req_idx] if ref $expected eq 'ARRAY';

    SKIP: {
        skip "$name - error_log - tests skipped due to $dry_run", 1 if $dry_run;
        my $got = '';
        for my $line (@{ $lines->() }) {
            my $m = ref $grep ? ($line =~ /$grep/ ? $& : undef)
                  : index($line, $grep) >= 0 ? $grep : undef;
            $got .= "$m\n" if defined $m && $m !~ /\n/;
        }
        my $desc = "$name - grep_error_log_out (req $repeated_req_idx)";
        ref $expected eq 'Regexp' ? like($got, $expected, $desc)
                                  : is_str($got, $expected, $desc);
    }
}

sub check_error_log {
    my ($block, $res, $dry_run, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;
    my $cached;
    my $lines = sub { $cached ||= error_log_data() || [] };
    my $suffix = " (req $repeated_req_idx)";

    _check_grep_error_log($block, $lines, $dry_run, $repeated_req_idx);

    my %warn_about = map { $_ => 1 } qw(alert crit emerg);
    for my $sec (qw(error_log no_error_log)) {
        my $pats = $block->$sec;
        next unless defined $pats;
        for my $level (keys %warn_about) {
            delete $warn_about{$level} if _contains($pats, "[$level");
        }
        my $check = $sec eq 'error_log' ? \&_check_log_has : \&_check_log_lacks;
        $check->($name, 'error.log', $pats, $lines->(), $dry_run, $suffix);
    }

    return if $dry_run;
    for my $line (@{ $lines->() }) {
        for my $level (sort keys %warn_about) {
            warn "WARNING: $name - " . fmt_str($line) . "\n"
                if $line =~ /\[$level\]/;
        }
        if ($line =~ /\bAssertion .*?failed\b/) {
            _no_ending();
            chomp(my $l = $line);
            fail("$name - $l\n");
        }
    }
}

sub check_access_log {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;
    my $lines;
    my $suffix = " (req $repeated_req_idx)";
    if (defined(my $pats = $block->access_log)) {
        $lines ||= access_log_data();
        _check_log_has($name, 'access.log', $pats, $lines, $dry_run, $suffix);
    }
    if (defined(my $pats = $block->no_access_log)) {
        $lines ||= access_log_data();
        _check_log_lacks($name, 'access.log', $pats, $lines, $dry_run, $suffix);
    }
}

sub check_shutdown_error_log {
    my ($block, $dry_run) = @_;
    my $name = $block->name;
    my $lines;
    if (defined(my $pats = $block->shutdown_error_log)) {
        $lines ||= error_log_data() || [];
        _check_log_has($name, 'error.log', $pats, $lines, $dry_run, '');
    }
    if (defined(my $pats = $block->no_shutdown_error_log)) {
        $lines ||= error_log_data() || [];
        _check_log_lacks($name, 'error.log', $pats, $lines, $dry_run, '');
    }
}

1;
