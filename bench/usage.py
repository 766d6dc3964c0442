#!/usr/bin/python3
"""The Operators of bench/usage (run by it; Debian's python3, which has
grpcio).  Stubs are generated from proto/kubenova.proto into --stubs by
bench/usage before any of this runs.

    usage.py --stubs DIR report --target H:P --clusters N --ca CRT
        --identities DIR --reports R --tenants T --first-sequence S
        --timeout SECONDS
        opens N streams (clusters bench-1 .. bench-N, each over mTLS with
        its identity from DIR: bench/identities.py), one TCP connection each, says hello and waits for every Welcome; then every
        stream sends R usage reports at once (sequences S .. S+R-1, one
        window of an hour each, T tenants with every counter set), built
        before the clock starts, and waits for their R UsageAcks.  Prints
        "acked REPORTS SECONDS" (from the first report sent to the last ack
        received), or "failed: why" and exits 1.
    usage.py --stubs DIR payload --tenants T
        prints the tenants of one report as gateway.usage takes them
        (JSON), for the database-only baseline
"""

import argparse
import asyncio
import json
import sys
import time

import grpc

from identities import CHANNEL_OPTIONS, channel_credentials

METHOD = "/kubenova.v1.OperatorGateway/Connect"
HOUR = 3600
T0 = 1704067200       # 2024-01-01T00:00:00Z: the first report's window


def stubs(path):
    sys.path.insert(0, path)
    import kubenova_pb2
    return kubenova_pb2


def tenants(n):
    """T tenants with figures that differ from one to the next"""
    return [dict(tenant="bench-tenant-%05d" % i,
                 cpu_request_millicores=100 + i, memory_request_bytes=(i + 1) << 20,
                 storage_request_bytes=(i + 1) << 30, load_balancers=i % 3,
                 pods=1 + i % 17, namespaces=2, applications=i % 5,
                 gpu_requests=i % 2, quota_violations=i % 7)
            for i in range(n)]


async def report(args, pb):
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)] \
        + CHANNEL_OPTIONS
    usage = [pb.TenantUsage(**t) for t in tenants(args.tenants)]
    messages = [pb.OperatorMessage(usage=pb.UsageReport(
                    sequence=args.first_sequence + r,
                    window_start_unix=T0 + (args.first_sequence + r) * HOUR,
                    window_end_unix=T0 + (args.first_sequence + r + 1) * HOUR,
                    tenants=usage)).SerializeToString()
                for r in range(args.reports)]
    start = asyncio.Event()
    welcomed = 0
    all_welcomed = asyncio.Event()
    finished = []
    failed = []
    sem = asyncio.Semaphore(50)       # hellos in flight at once

    async def one(i):
        nonlocal welcomed
        ch = grpc.aio.secure_channel(
            args.target,
            channel_credentials(args.ca, args.identities, "bench-%d" % i),
            options=opts)
        call = ch.stream_stream(METHOD, request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)()
        try:
            async with sem:
                await call.write(pb.OperatorMessage(hello=pb.Hello(
                    cluster="bench-%d" % i,
                    operator_version="bench")).SerializeToString())
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    failed.append("bench-%d: %s %s" % (
                        i, await call.code(), await call.details()))
                    all_welcomed.set()
                    return
            welcomed += 1
            if welcomed == args.clusters:
                all_welcomed.set()
            await start.wait()
            for m in messages:
                await call.write(m)
            acked = 0
            while acked < args.reports:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    failed.append("bench-%d: ended after %d acks: %s %s" % (
                        i, acked, await call.code(), await call.details()))
                    return
                if pb.ManagerMessage.FromString(raw).WhichOneof("body") == "usage_ack":
                    acked += 1
            finished.append(time.monotonic())
            await call.done_writing()
        except grpc.RpcError as e:
            failed.append("bench-%d: %s" % (i, e))
        finally:
            await ch.close()

    tasks = [asyncio.ensure_future(one(i)) for i in range(1, args.clusters + 1)]
    try:
        await asyncio.wait_for(all_welcomed.wait(), args.timeout)
    except asyncio.TimeoutError:
        failed.append("only %d of %d streams welcomed" % (welcomed, args.clusters))
    if failed:
        print("failed: %s" % failed[0], flush=True)
        sys.exit(1)
    t0 = time.monotonic()
    start.set()
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    if pending or failed or len(finished) != args.clusters:
        print("failed: %s" % (failed[0] if failed else "timed out after %ds" % args.timeout),
              flush=True)
        sys.exit(1)
    print("acked %d %.3f" % (args.clusters * args.reports, max(finished) - t0), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("report")
    p.add_argument("--target", required=True)
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--identities", required=True)
    p.add_argument("--reports", type=int, required=True)
    p.add_argument("--tenants", type=int, required=True)
    p.add_argument("--first-sequence", type=int, required=True)
    p.add_argument("--timeout", type=int, default=300)
    p = sub.add_parser("payload")
    p.add_argument("--tenants", type=int, required=True)
    args = ap.parse_args()
    if args.cmd == "payload":
        print(json.dumps(tenants(args.tenants)))
        return
    asyncio.run(report(args, stubs(args.stubs)))


if __name__ == "__main__":
    main()
