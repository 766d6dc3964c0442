#!/usr/bin/python3
"""The Operator side of bench/streams (run by it; Debian's python3, which
has grpcio).  Stubs are generated from proto/kubenova.proto into --stubs
by bench/streams before any of this runs.

Every stream is mTLS: --ca is the CA of the gateway's certificate, and
--identities the directory of bench/identities.py (a client certificate per
cluster).

    streams.py --stubs DIR idle --target H:P --first I --count N
        --ca CRT --identities DIR --timeout S
        opens N streams (clusters bench-I .. bench-(I+N-1), each with its
        own identity), one TCP connection each, says hello and waits for every Welcome;
        prints "ready N SECONDS" (or "reached K: why") and keeps them open,
        idle, until SIGTERM
    streams.py --stubs DIR latency --target H:P --api URL --token T
        --cluster C --ca CRT --identities DIR --tenant T --writes N
        one stream; N REST writes one after the other; prints, one line
        per write, the ms from sending the POST to the update's arrival
        and from the POST's answer to it (negative: the update came first)
    streams.py --stubs DIR throughput --target H:P --cluster C --ca CRT
        --identities DIR --expect N
        one stream, hello with nothing applied; prints the seconds from
        the hello to the N-th update, and the bytes received
    streams.py --stubs DIR pyserver --port P --rows CSV --cluster C
        --ca CRT --cert CRT --key KEY
        a grpcio server over mTLS (server certificate and key, client
        certificates of the CA required, as the gateway's) answering Connect, after the hello, with the
        messages nginx sends for those desired_state rows (kind, name,
        generation, spec): a Welcome, then one ObjectUpdate per row,
        built before it serves; until SIGTERM
"""

import argparse
import asyncio
import http.client
import json
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures
from urllib.parse import urlparse

import grpc

from identities import CHANNEL_OPTIONS, channel_credentials

METHOD = "/kubenova.v1.OperatorGateway/Connect"


def stubs(path):
    sys.path.insert(0, path)
    import kubenova_pb2
    return kubenova_pb2


# --- idle streams -----------------------------------------------------------

async def idle(args, pb):
    opts = [("grpc.use_local_subchannel_pool", 1),
            ("grpc.enable_retries", 0)] + CHANNEL_OPTIONS
    welcomed = 0
    failed = []
    calls = []
    done = asyncio.Event()
    sem = asyncio.Semaphore(200)      # hellos in flight at once

    async def one(i):
        nonlocal welcomed
        await sem.acquire()
        held = True
        ch = grpc.aio.secure_channel(
            args.target,
            channel_credentials(args.ca, args.identities, "bench-%d" % i),
            options=opts)
        call = ch.stream_stream(METHOD, request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)()
        calls.append((ch, call))
        hello = pb.OperatorMessage(hello=pb.Hello(
            cluster="bench-%d" % i,
            operator_version="bench")).SerializeToString()
        try:
            await call.write(hello)
            raw = await call.read()
            if raw is grpc.aio.EOF:
                failed.append("bench-%d: %s %s" % (
                    i, await call.code(), await call.details()))
                return
            m = pb.ManagerMessage.FromString(raw)
            if m.WhichOneof("body") != "welcome":
                failed.append("bench-%d: %s first" % (i, m.WhichOneof("body")))
                return
            welcomed += 1
            if welcomed == args.count:
                done.set()
            sem.release()
            held = False
            # idle: read (heartbeats) until cancelled
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    break
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as e:
            failed.append("bench-%d: %s" % (i, e))
        finally:
            if held:
                sem.release()

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(one(i))
             for i in range(args.first, args.first + args.count)]
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
        print("ready %d %.1f" % (welcomed, time.monotonic() - t0), flush=True)
    except asyncio.TimeoutError:
        why = failed[0] if failed else "timed out after %ds" % args.timeout
        print("reached %d: %s" % (welcomed, why), flush=True)

    # hold until told to stop (SIGTERM)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    # the kernel closes every connection at once: nginx sees them go
    sys.stdout.flush()
    os._exit(0)


# --- one stream, blocking API ----------------------------------------------

class Stream:
    def __init__(self, pb, args, applied=()):
        self.pb = pb
        self.q = queue.Queue()
        self.ch = grpc.secure_channel(
            args.target,
            channel_credentials(args.ca, args.identities, args.cluster),
            options=[("grpc.use_local_subchannel_pool", 1),
                     ("grpc.max_receive_message_length", 64 << 20)]
            + CHANNEL_OPTIONS)
        self.q.put(pb.OperatorMessage(hello=pb.Hello(
            cluster=args.cluster,
            applied=list(applied))).SerializeToString())
        self.call = self.ch.stream_stream(
            METHOD, request_serializer=lambda b: b,
            response_deserializer=lambda b: b)(self.requests())

    def requests(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m

    def close(self):
        self.q.put(None)
        self.call.cancel()
        self.ch.close()


def rest(api, token, method, path, body):
    u = urlparse(api)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request(method, path, body=json.dumps(body),
              headers={"Authorization": "Bearer " + token,
                       "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError("%s %s: %d" % (method, path, r.status))


def latency(args, pb):
    s = Stream(pb, args)
    arrived = {}
    welcome = threading.Event()

    def reader():
        try:
            for raw in s.call:
                m = pb.ManagerMessage.FromString(raw)
                kind = m.WhichOneof("body")
                if kind == "welcome":
                    welcome.set()
                elif kind == "update":
                    arrived.setdefault(m.update.name, time.monotonic())
        except grpc.RpcError:
            pass
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    if not welcome.wait(30):
        sys.exit("latency: no Welcome")
    answered = {}
    for i in range(args.writes):
        name = "lat-%d" % i
        doc = {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
               "metadata": {"name": name},
               "spec": {"components": [{"name": "web", "type": "webservice",
                                        "properties": {"image": "nginx:1.25"}}]}}
        t_sent = time.monotonic()
        rest(args.api, args.token, "POST",
             "/api/v1/tenants/%s/apps" % args.tenant, doc)
        answered["%s/%s" % (args.tenant, name)] = (t_sent, time.monotonic())
    deadline = time.monotonic() + 30
    while len([n for n in answered if n in arrived]) < len(answered) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    s.close()
    lost = [n for n in answered if n not in arrived]
    for n, (sent, answer) in answered.items():
        if n in arrived:
            print("%.3f %.3f" % ((arrived[n] - sent) * 1000,
                                 (arrived[n] - answer) * 1000))
    if lost:
        print("lost %d" % len(lost))


def throughput(args, pb):
    t0 = time.monotonic()
    s = Stream(pb, args)
    n = 0
    size = 0
    t_end = None
    try:
        for raw in s.call:
            # the first byte of an update is field 3's tag (0x1a)
            if raw[:1] == b"\x1a":
                n += 1
                size += len(raw) + 5
                if n == args.expect:
                    t_end = time.monotonic()
                    break
    finally:
        s.close()
    if t_end is None:
        sys.exit("throughput: %d of %d updates" % (n, args.expect))
    print("%.4f %d" % (t_end - t0, size))


# --- the python server to compare with ---------------------------------------

def pyserver(args, pb):
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    # the same ManagerMessages nginx sends: a Welcome, then one update per
    # desired_state row (CSV: kind, name, generation, spec)
    import csv
    with open(args.rows, newline="") as f:
        rows = list(csv.reader(f))
    msgs = [pb.ManagerMessage(welcome=pb.Welcome(
        cluster=args.cluster, heartbeat_interval_ms=10000,
        updates=len(rows))).SerializeToString()]
    for kind, name, gen, spec in rows:
        msgs.append(pb.ManagerMessage(update=pb.ObjectUpdate(
            kind=kind, name=name, generation=int(gen),
            payload=spec.encode())).SerializeToString())

    def connect(request_iterator, context):
        hello = next(request_iterator)          # the hello, unchecked
        del hello
        for m in msgs:
            yield m

    handler = grpc.method_handlers_generic_handler(
        "kubenova.v1.OperatorGateway",
        {"Connect": grpc.stream_stream_rpc_method_handler(
            connect, request_deserializer=lambda b: b,
            response_serializer=lambda b: b)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    server.add_secure_port("127.0.0.1:%d" % args.port,
                           grpc.ssl_server_credentials(
                               [(read(args.key), read(args.cert))],
                               root_certificates=read(args.ca),
                               require_client_auth=True))
    server.start()
    print("serving %d" % len(msgs), flush=True)
    signal.sigwait([signal.SIGTERM])
    server.stop(0)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("idle")
    p.add_argument("--target", required=True)
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--identities", required=True)
    p.add_argument("--timeout", type=int, default=120)
    p = sub.add_parser("latency")
    for a in ("target", "api", "token", "cluster", "ca", "identities",
              "tenant"):
        p.add_argument("--" + a, required=True)
    p.add_argument("--writes", type=int, default=200)
    p = sub.add_parser("throughput")
    for a in ("target", "cluster", "ca", "identities"):
        p.add_argument("--" + a, required=True)
    p.add_argument("--expect", type=int, required=True)
    p = sub.add_parser("pyserver")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rows", required=True)
    p.add_argument("--cluster", default="bench-tp")
    for a in ("ca", "cert", "key"):
        p.add_argument("--" + a, required=True)
    args = ap.parse_args()
    pb = stubs(args.stubs)
    if args.cmd == "idle":
        asyncio.run(idle(args, pb))
        sys.stdout.flush()
        os._exit(0)         # no lingering grpc threads
    elif args.cmd == "latency":
        latency(args, pb)
    elif args.cmd == "throughput":
        throughput(args, pb)
    else:
        pyserver(args, pb)


if __name__ == "__main__":
    main()
