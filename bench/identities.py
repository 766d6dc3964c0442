#!/usr/bin/python3
"""Operator identities in bulk for the bench/ scripts (Debian's python3,
which has python3-cryptography): what POST /clusters/{c}/register hands
out, for thousands of clusters without a join token each.

    identities.py --ca-cert CRT --ca-key KEY --out DIR NAME...
    identities.py --ca-cert CRT --ca-key KEY --out DIR --prefix P
        --first I --count N          (names P<I> .. P<I+N-1>)

Writes DIR/tls.key (one key for every identity: a bench measures the
gateway, not key generation) and DIR/<name>.crt, a certificate signed by
the CA with subject CN=<name> and a random serial of 16 bytes whose first
bit is clear and whose first byte is not zero (ngx_kubenova_ca_new_serial's
form, so that nginx reads it back as the same lowercase hex).  Prints one
CSV line per identity, "serial,cluster,not_after", the row the register
endpoint records in cluster_certificates.

The bench clients import it for channel_credentials and CHANNEL_OPTIONS:
an identity's mTLS credentials for the gateway.
"""

import argparse
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)

# the gateway's certificate names localhost; the benches dial 127.0.0.1
CHANNEL_OPTIONS = [("grpc.ssl_target_name_override", "localhost")]


def channel_credentials(ca, identities, name):
    """grpc credentials for cluster NAME: the CA that signed the gateway's
    certificate, the shared key and NAME's certificate from IDENTITIES"""
    import grpc

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        private_key=read(os.path.join(identities, "tls.key")),
        certificate_chain=read(os.path.join(identities, name + ".crt")))


def serial():
    raw = bytearray(os.urandom(16))
    raw[0] = (raw[0] & 0x7F) | 0x40
    return int.from_bytes(raw, "big")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca-cert", required=True)
    ap.add_argument("--ca-key", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix")
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    names = list(args.names)
    if args.prefix is not None:
        names += ["%s%d" % (args.prefix, i)
                  for i in range(args.first, args.first + args.count)]
    if not names:
        sys.exit("identities: no names")

    with open(args.ca_cert, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(args.ca_key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)

    os.makedirs(args.out, mode=0o700, exist_ok=True)
    key_path = os.path.join(args.out, "tls.key")
    if os.path.exists(key_path):
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = (now + VALIDITY).replace(microsecond=0)
    out = sys.stdout
    for name in names:
        sn = serial()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([
                    x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(sn)
                .not_valid_before(not_before)
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        with open(os.path.join(args.out, name + ".crt"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        out.write("%032x,%s,%s\n" % (sn, name, not_after.isoformat()))


if __name__ == "__main__":
    main()
