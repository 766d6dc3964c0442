package KubeNova::Pki;

# Keys, CSRs and certificates for the registration and mTLS tests, made
# with the openssl command line (what an administrator would run).
#
#   my $ca = KubeNova::Pki::make_ca($dir, 'kubenova-ca');
#                          # {key => FILE, cert => FILE}: an EC P-256 CA
#   my $srv = KubeNova::Pki::server_cert($dir, $ca, 'gateway');
#                          # {key, cert}: for localhost and 127.0.0.1
#   my $csr = KubeNova::Pki::key_and_csr($dir, 'c1', 'CN=c1');
#                          # {key => FILE, csr => FILE, pem => CSR text}
#   my $file = KubeNova::Pki::sign_client($dir, $other_ca, $csr, 'c1-other');
#                          # a client certificate from any CA
#   KubeNova::Pki::cert_field($file_or_pem, 'enddate' | 'serial' | 'subject')

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempfile);

sub _openssl {
    my (@args) = @_;
    my $out = qx{openssl @args 2>&1};
    croak "openssl @args failed: $out" if $?;
    return $out;
}

sub _write {
    my ($file, $text) = @_;
    open my $fh, '>', $file or croak "$file: $!";
    print {$fh} $text;
    close $fh;
    return $file;
}

sub make_ca {
    my ($dir, $name) = @_;
    my %ca = (key => "$dir/$name.key", cert => "$dir/$name.crt");
    _openssl(qw(req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256),
             '-keyout', $ca{key}, '-out', $ca{cert}, '-days', 30,
             '-subj', "/CN=$name",
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    return \%ca;
}

sub key_and_csr {
    my ($dir, $base, $subject) = @_;
    my %k = (key => "$dir/$base.key", csr => "$dir/$base.csr");
    _openssl(qw(req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256),
             '-keyout', $k{key}, '-out', $k{csr}, '-subj', "'/$subject'");
    open my $fh, '<', $k{csr} or croak "$k{csr}: $!";
    local $/;
    $k{pem} = <$fh>;
    return \%k;
}

sub _sign {
    my ($dir, $ca, $csr_file, $out, $ext) = @_;
    my $extfile = _write("$out.ext", $ext);
    _openssl('x509', '-req', '-in', $csr_file, '-CA', $ca->{cert},
             '-CAkey', $ca->{key}, '-CAcreateserial', '-days', 2,
             '-out', $out, '-extfile', $extfile);
    return $out;
}

sub server_cert {
    my ($dir, $ca, $base) = @_;
    my $k = key_and_csr($dir, $base, 'CN=localhost');
    _sign($dir, $ca, $k->{csr}, "$dir/$base.crt",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
          . "extendedKeyUsage=serverAuth\n");
    return { key => $k->{key}, cert => "$dir/$base.crt" };
}

sub sign_client {
    my ($dir, $ca, $csr, $base) = @_;
    return _sign($dir, $ca, $csr->{csr}, "$dir/$base.crt",
                 "extendedKeyUsage=clientAuth\n");
}

# one field of a certificate (a file, or PEM text)
sub cert_field {
    my ($cert, $field) = @_;
    my $file = $cert;
    if ($cert =~ /-----BEGIN/) {
        (my $fh, $file) = tempfile('kn-cert.XXXXXX', TMPDIR => 1, UNLINK => 1);
        print {$fh} $cert;
        close $fh;
    }
    my $out = _openssl('x509', '-noout', "-$field", '-in', $file);
    chomp $out;
    $out =~ s/^[^=]*=\s*// unless $field eq 'subject';
    $out =~ s/^subject=\s*// if $field eq 'subject';
    return $out;
}

1;
