#!/usr/bin/python3
"""A Manager stand-in for the Operator tests: OperatorGateway served by
python3-grpcio (the reference gRPC implementation), an independent peer
for the Operator's gRPC client, plus two servers that are NOT HTTP/2.

    /usr/bin/python3 t/lib/kubenova_grpc_server.py --proto proto/kubenova.proto \
        [--tls-cert CERT --tls-key KEY [--client-ca CA --client-ca-key KEY]]

Generates the protobuf and gRPC stubs with grpc_tools.protoc into a
temporary directory, starts

    port        gRPC over h2c (plain HTTP/2, prior knowledge)
    tls_port    gRPC over TLS with ALPN h2 (when --tls-cert/--tls-key)
    h1_port     a plain HTTP/1.1 server: answers anything with 505
    h1s_port    HTTP/1.1 over TLS, ALPN offering only http/1.1 (with TLS)

With --client-ca (cluster registration, issue 6) the TLS port requires a
client certificate signed by that CA (mTLS; "connect" events carry the
certificate's "cn"), and

    reg_port    HTTPS: POST /api/v1/clusters/<name>/register, the Manager's
                registration endpoint as registration-interface.md fixes
                it: {"join_token", "csr"} -> 201 {"certificate", "ca",
                "not_after"}, the CSR signed by the client CA; 401 for an
                unknown or used token, 422 for a bad CSR, 403 for a CSR
                naming another cluster

prints {"ev": "ready", "port": ..., ...} and then reads commands, one JSON
object per line, on standard input, and writes events, one JSON object
per line, on standard output.

Commands:

    {"op": "mode", ...}   how new streams are treated (merged into the
                          current mode; defaults below):
        "welcome": true               answer a hello with a Welcome
        "heartbeat_interval_ms": 1000 in the Welcome, and how often the
                                      server sends heartbeats
        "send_heartbeats": true
        "updates": []                 ObjectUpdates ({kind, name,
                                      generation, payload (text)}) sent
                                      after the Welcome
        "read": true                  false: read nothing after the hello
        "cert_validity": 3600         seconds, of the certificates signed
                                      at registration and renewal
        "renew": true                 answer a CertificateRequest with a
                                      CertificateIssued
        "end_after_hello": null       {"code": "UNAVAILABLE", "details":
                                      "...", "delay": 0.0}: end every
                                      stream that long after its hello
    {"op": "send", "msg": {...}}      a ManagerMessage (JSON form) on the
                                      newest stream
    {"op": "send_big", "size": N}     an ObjectUpdate with a payload of N
                                      bytes on the newest stream
    {"op": "end", "code": "UNAVAILABLE", "details": "..."}
                                      end the newest stream with a status
    {"op": "join_token", "cluster": "c", "token": "t"}
                                      a single-use join token for cluster c
    {"op": "quit"}

Events ("n" numbers streams from 1, "t" is seconds since start):

    {"ev": "connect", "n": 1, "mode_seq": 2, "t": ...}
                                    a stream began, under the mode set by
                                    the mode_seq-th "mode" command
    {"ev": "msg", "n": 1, "type": "hello", "msg": {...}, "t": ...}
    {"ev": "half_close", "n": 1, "t": ...}             client ended its side
    {"ev": "end", "n": 1, "t": ...}                    the stream is gone
    {"ev": "h1_connect", "tls": false, "t": ...}       an HTTP/1.1 server
                                                       got a connection
    {"ev": "register", "cluster": "c", "status": 201, "serial": "..."}
    {"ev": "issued", "n": 1, "cn": "c", "serial": "...", "not_after": ...}
                                    a renewal answered on stream n
"""

import argparse
import datetime
import http.server
import json
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

T0 = time.monotonic()
OUT_LOCK = threading.Lock()


def now():
    return round(time.monotonic() - T0, 3)


def emit(ev):
    ev.setdefault("t", now())
    line = json.dumps(ev, sort_keys=True)
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def load_stubs(proto):
    """protoc (messages and service) into a temporary directory"""
    tmp = tempfile.mkdtemp(prefix="kn-grpc-server-stubs.")
    try:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                        "-I", os.path.dirname(os.path.abspath(proto)),
                        "--python_out=" + tmp, "--grpc_python_out=" + tmp,
                        os.path.basename(proto)], check=True)
        sys.path.insert(0, tmp)
        import kubenova_pb2  # noqa: E402
        import kubenova_pb2_grpc  # noqa: E402
        return kubenova_pb2, kubenova_pb2_grpc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ClientCA:
    """signs the Operators' CSRs, as the Manager's kubenova_ca does"""

    def __init__(self, cert_file, key_file):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        self.x509 = x509
        with open(cert_file, "rb") as f:
            self.pem = f.read()
        with open(key_file, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        self.cert = x509.load_pem_x509_certificate(self.pem)

    def sign(self, csr_pem, validity):
        """(cn, certificate PEM, serial hex, not_after unix); ValueError
        for a CSR that does not parse or verify"""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        x509 = self.x509
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature is invalid")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1:
            raise ValueError("the CSR has no single CN")
        now = datetime.datetime.utcnow().replace(microsecond=0)
        not_after = now + datetime.timedelta(seconds=int(validity))
        cert = (x509.CertificateBuilder()
                .subject_name(csr.subject)
                .issuer_name(self.cert.subject)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(not_after)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return (cns[0].value,
                cert.public_bytes(serialization.Encoding.PEM).decode(),
                # whole bytes, as OpenSSL prints serials
                "%0*X" % (len("%X" % cert.serial_number) + 1 & ~1,
                          cert.serial_number),
                int(not_after.replace(
                    tzinfo=datetime.timezone.utc).timestamp()))


class Gateway:
    """the OperatorGateway servicer: every stream is numbered and logged"""

    def __init__(self, pb, json_format):
        self.pb = pb
        self.jf = json_format
        self.lock = threading.Lock()
        self.count = 0
        self.streams = {}
        self.mode_seq = 0
        self.client_ca = None
        self.join_tokens = {}       # token -> cluster, single use
        self.mode = {"welcome": True, "heartbeat_interval_ms": 1000,
                     "send_heartbeats": True, "updates": [],
                     "end_after_hello": None, "read": True,
                     "cert_validity": 3600, "renew": True}

    def newest(self):
        with self.lock:
            live = [n for n, q in self.streams.items() if q is not None]
            return (max(live), self.streams[max(live)]) if live else (None,
                                                                     None)

    def to_json(self, m):
        return self.jf.MessageToDict(m, preserving_proto_field_name=True,
                                     including_default_value_fields=True)

    def Connect(self, request_iterator, context):
        with self.lock:
            self.count += 1
            n = self.count
            out = queue.Queue()
            self.streams[n] = out
            mode = json.loads(json.dumps(self.mode))
            mode_seq = self.mode_seq

        cn = context.auth_context().get("x509_common_name")
        emit({"ev": "connect", "n": n, "peer": context.peer(),
              "mode_seq": mode_seq,
              "cn": cn[0].decode() if cn else None})
        context.add_callback(lambda: self.gone(n))

        def reader():
            try:
                for m in request_iterator:
                    kind = m.WhichOneof("body")
                    # queued before it is told: whatever a test sends on
                    # seeing the hello comes after the Welcome
                    if kind == "hello":
                        out.put(("hello", None))
                    if kind == "certificate_request" and mode["renew"]:
                        self.renew(n, cn[0].decode() if cn else "", m,
                                   mode, out)
                    emit({"ev": "msg", "n": n, "type": kind,
                          "msg": self.to_json(getattr(m, kind))
                          if kind else {}})
                    if not mode["read"]:
                        return          # the client's window fills up
                emit({"ev": "half_close", "n": n})
                out.put(("half_close", None))
            except Exception as e:  # the stream was cancelled
                out.put(("reader_error", str(e)))

        threading.Thread(target=reader, daemon=True).start()

        hb_ms = int(mode["heartbeat_interval_ms"])
        next_hb = None
        end_at = None
        while context.is_active():
            timeout = 0.05
            try:
                what, arg = out.get(timeout=timeout)
            except queue.Empty:
                what, arg = None, None

            t = time.monotonic()
            if what == "hello":
                if mode["welcome"]:
                    yield self.pb.ManagerMessage(welcome=self.pb.Welcome(
                        cluster="", heartbeat_interval_ms=hb_ms,
                        updates=len(mode["updates"]), deletes=0))
                    for u in mode["updates"]:
                        yield self.pb.ManagerMessage(
                            update=self.pb.ObjectUpdate(
                                kind=u["kind"], name=u["name"],
                                generation=int(u["generation"]),
                                payload=u.get("payload", "{}").encode()))
                    if mode["send_heartbeats"]:
                        next_hb = t + hb_ms / 1000.0
                eah = mode["end_after_hello"]
                if eah:
                    end_at = (t + float(eah.get("delay", 0)),
                              eah.get("code", "UNAVAILABLE"),
                              eah.get("details", "go away"))
            elif what == "send":
                yield arg
            elif what == "end":
                end_at = (t, arg[0], arg[1])
            elif what == "half_close":
                # the Operator closed its side: end OK, as the Manager does
                end_at = (t, "OK", "the client closed the stream")

            if end_at and t >= end_at[0]:
                code = getattr(grpc.StatusCode, end_at[1])
                if code == grpc.StatusCode.OK:
                    return
                context.abort(code, end_at[2])

            if next_hb and t >= next_hb:
                yield self.pb.ManagerMessage(heartbeat=self.pb.Heartbeat(
                    sent_at_unix_ms=int(time.time() * 1000)))
                next_hb += hb_ms / 1000.0

    def renew(self, n, stream_cn, m, mode, out):
        """a CertificateIssued for a CertificateRequest, as the Manager
        answers one: signed for the stream's own cluster only"""
        pb = self.pb
        try:
            cn, pem, serial, not_after = self.client_ca.sign(
                m.certificate_request.csr_pem, mode["cert_validity"])
            if cn != stream_cn:
                raise ValueError("the CSR names another cluster")
        except Exception as e:
            out.put(("send", pb.ManagerMessage(
                certificate=pb.CertificateIssued(error=str(e)))))
            emit({"ev": "issued", "n": n, "error": str(e)})
            return
        out.put(("send", pb.ManagerMessage(
            certificate=pb.CertificateIssued(
                certificate_pem=pem.encode(), ca_pem=self.client_ca.pem,
                not_after_unix=not_after))))
        emit({"ev": "issued", "n": n, "cn": cn, "serial": serial,
              "not_after": not_after})

    def register(self, cluster, body):
        """POST /api/v1/clusters/<cluster>/register: (status, answer)"""
        try:
            req = json.loads(body)
            token, csr = req["join_token"], req["csr"].encode()
        except Exception:
            return 400, {"error": "the body must be JSON with join_token "
                                  "and csr"}
        with self.lock:
            if self.join_tokens.get(token) != cluster:
                return 401, {"error": "unknown or used join token"}
            validity = self.mode["cert_validity"]
        try:
            cn, pem, serial, not_after = self.client_ca.sign(csr, validity)
        except Exception as e:
            return 422, {"error": "malformed CSR: %s" % e}
        if cn != cluster:
            return 403, {"error": "the CSR names cluster %s" % cn}
        with self.lock:
            if self.join_tokens.pop(token, None) != cluster:
                return 401, {"error": "unknown or used join token"}
        return 201, {"certificate": pem, "ca": self.client_ca.pem.decode(),
                     "not_after": datetime.datetime.utcfromtimestamp(
                         not_after).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "serial": serial}

    def gone(self, n):
        with self.lock:
            self.streams[n] = None
        emit({"ev": "end", "n": n})


def h1_server(sock, tls_ctx):
    """HTTP/1.1 only: every connection is logged and answered 505"""
    def serve(conn):
        try:
            if tls_ctx:
                conn = tls_ctx.wrap_socket(conn, server_side=True)
            conn.settimeout(2)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
            except Exception:
                pass
            body = b"HTTP/2 is not spoken here\n"
            conn.sendall(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
                         b"Content-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n"
                         b"Connection: close\r\n\r\n" + body)
            # no reset: let the client read the answer before the close
            try:
                if tls_ctx:
                    conn = conn.unwrap()
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
            except Exception:
                pass
        except Exception:
            pass
        finally:
            try:
                conn.close()
            except Exception:
                pass

    while True:
        conn, _ = sock.accept()
        emit({"ev": "h1_connect", "tls": bool(tls_ctx)})
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def register_server(gw, sock, tls_ctx):
    """the registration endpoint over HTTPS"""
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            parts = self.path.split("/")
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(n, 1 << 20))
            if (len(parts) == 6 and parts[1:4] == ["api", "v1", "clusters"]
                    and parts[5] == "register"):
                status, answer = gw.register(parts[4], body)
            else:
                status, answer = 404, {"error": "not found"}
            emit({"ev": "register", "cluster": parts[4]
                  if len(parts) > 4 else None, "status": status,
                  "serial": answer.get("serial"),
                  "error": answer.get("error")})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self):
            pass

        def server_activate(self):
            pass

    srv = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    srv.socket = tls_ctx.wrap_socket(sock, server_side=True)
    srv.server_address = srv.socket.getsockname()
    srv.serve_forever()


def listen():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--client-ca-key")
    args = ap.parse_args()

    pb, pb_grpc = load_stubs(args.proto)
    from google.protobuf import json_format

    gw = Gateway(pb, json_format)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.max_send_message_length", 256 << 20),
                                  ("grpc.max_receive_message_length",
                                   64 << 20)])
    pb_grpc.add_OperatorGatewayServicer_to_server(gw, server)
    ready = {"ev": "ready"}
    ready["port"] = server.add_insecure_port("127.0.0.1:0")

    if args.tls_cert:
        with open(args.tls_key, "rb") as f:
            key = f.read()
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        if args.client_ca:
            gw.client_ca = ClientCA(args.client_ca, args.client_ca_key)
            creds = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=gw.client_ca.pem,
                require_client_auth=True)
        else:
            creds = grpc.ssl_server_credentials([(key, cert)])
        ready["tls_port"] = server.add_secure_port("127.0.0.1:0", creds)

    server.start()

    h1 = listen()
    ready["h1_port"] = h1.getsockname()[1]
    threading.Thread(target=h1_server, args=(h1, None), daemon=True).start()

    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        ctx.set_alpn_protocols(["http/1.1"])
        h1s = listen()
        ready["h1s_port"] = h1s.getsockname()[1]
        threading.Thread(target=h1_server, args=(h1s, ctx),
                         daemon=True).start()

    if args.client_ca:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        reg = listen()
        ready["reg_port"] = reg.getsockname()[1]
        threading.Thread(target=register_server, args=(gw, reg, ctx),
                         daemon=True).start()

    emit(ready)

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
            op = c["op"]
            if op == "quit":
                break
            elif op == "mode":
                with gw.lock:
                    gw.mode.update({k: v for k, v in c.items() if k != "op"})
                    gw.mode_seq += 1
            elif op == "join_token":
                with gw.lock:
                    gw.join_tokens[c["token"]] = c["cluster"]
            elif op in ("send", "send_big", "end"):
                n, q = gw.newest()
                if q is None:
                    emit({"ev": "error", "error": "no live stream"})
                    continue
                if op == "send":
                    m = json_format.ParseDict(c["msg"], pb.ManagerMessage())
                    q.put(("send", m))
                elif op == "send_big":
                    m = pb.ManagerMessage(update=pb.ObjectUpdate(
                        kind="Tenant", name="big", generation=1,
                        payload=b"x" * int(c["size"])))
                    q.put(("send", m))
                else:
                    q.put(("end", (c.get("code", "UNAVAILABLE"),
                                   c.get("details", ""))))
            else:
                emit({"ev": "error", "error": "unknown op " + op})
        except Exception as e:
            emit({"ev": "error", "error": repr(e)})

    server.stop(0)


if __name__ == "__main__":
    main()
