#!/usr/bin/python3
"""An Operator for the gateway tests: gRPC streams driven line by line.

    /usr/bin/python3 t/lib/kubenova_grpc_client.py --target 127.0.0.1:PORT \
        [--proto proto/kubenova.proto]

Generates the protobuf stubs from the proto into a temporary directory
(nothing generated is kept), prints {"ev": "ready"}, then reads commands,
one JSON object per line, on standard input and writes events, one JSON
object per line, on standard output (t/lib/KubeNova/Gateway.pm drives it).

Commands ("id" names a stream; every stream has a channel, so a TCP
connection, of its own):

    {"op": "open", "id": "s1", "hello": {...Hello...},
     "heartbeat_every": 1.0, "auto_ack": false, "paused": false,
     "quiet": false, "tls": {"ca": FILE, "key": FILE, "cert": FILE}}
        opens Connect; sends an OperatorMessage{hello} first when "hello"
        is given (proto3 JSON names: cluster, applied, ...);
        "tls": a TLS channel verifying the server with "ca", presenting the
        client key and certificate when given (mTLS);
        "paused": do not read its messages until "resume"; "quiet": report
        no message, only how many came ("received" in its end event)
    {"op": "send", "id": "s1", "msg": {...OperatorMessage...},
     "append_hex": "f806 01"}
        one OperatorMessage (JSON form, e.g. {"ack": {...}}); append_hex
        adds raw bytes after the serialized message (unknown fields)
    {"op": "send_raw", "id": "s1", "hex": "...", "repeat": 1}
        a message whose bytes are exactly these (hex, optionally repeated:
        "repeat" copies of them as ONE message)
    {"op": "heartbeats", "id": "s1", "every": 1.0}    0 stops them
    {"op": "auto_ack", "id": "s1", "on": true}  ack every update and delete
    {"op": "pause", "id": "s1"}      stop reading the stream's messages (the
                                     HTTP/2 window fills, the Manager waits)
    {"op": "resume", "id": "s1"}     read again
    {"op": "close", "id": "s1"}      half-close: no more messages
    {"op": "cancel", "id": "s1"}     RST_STREAM from the client
    {"op": "ping"}                   answered by {"ev": "pong"}
    {"op": "quit"}

Events:

    {"ev": "msg", "id": "s1", "type": "welcome", "msg": {...}, "t": 12.5}
        one ManagerMessage; msg is its body as JSON with proto field names
        and default values, an update's payload decoded to text in
        "payload_text" (int64 fields are JSON strings, as proto3 wants)
    {"ev": "end", "id": "s1", "code": "ABORTED", "code_num": 10,
     "details": "...", "received": 12, "t": 13.0}
        the stream is over, however it ended (an OK end too)
    {"ev": "sent", "id": "s1", "n": 3}   after each send/send_raw: how many
                                         messages were queued so far
    {"ev": "error", "error": "..."}      a command that made no sense

"t" is seconds since the client started (time.monotonic based).
"""

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

T0 = time.monotonic()
OUT_LOCK = threading.Lock()


def emit(ev):
    ev.setdefault("t", round(time.monotonic() - T0, 3))
    line = json.dumps(ev, sort_keys=True)
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def load_stubs(proto):
    """protoc into a temporary directory; returns the kubenova_pb2 module"""
    tmp = tempfile.mkdtemp(prefix="kn-grpc-stubs.")
    try:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                        "-I", os.path.dirname(os.path.abspath(proto)),
                        "--python_out=" + tmp, os.path.basename(proto)],
                       check=True)
        sys.path.insert(0, tmp)
        import kubenova_pb2  # noqa: E402
        return kubenova_pb2
    finally:
        # the module is loaded: the files are no longer needed
        shutil.rmtree(tmp, ignore_errors=True)


class Stream:
    def __init__(self, client, sid, opts):
        self.client = client
        self.pb = client.pb
        self.id = sid
        self.queue = queue.Queue()
        self.queued = 0
        self.auto_ack = bool(opts.get("auto_ack"))
        self.hb_every = float(opts.get("heartbeat_every") or 0)
        self.hb_lock = threading.Lock()
        self.hb_stop = threading.Event()
        self.closed = False
        self.ended = threading.Event()
        self.quiet = bool(opts.get("quiet"))
        self.received = 0
        self.reading = threading.Event()
        self.reading.set()
        if opts.get("paused"):
            self.reading.clear()

        options = [("grpc.use_local_subchannel_pool", 1),
                   ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.enable_retries", 0)]
        tls = opts.get("tls")
        if tls is not None:
            # mTLS: the Manager's CA, and the cluster's key and certificate
            # (either may be absent, to test refusals)
            def read(name):
                return open(tls[name], "rb").read() if tls.get(name) else None
            creds = grpc.ssl_channel_credentials(
                root_certificates=read("ca"), private_key=read("key"),
                certificate_chain=read("cert"))
            options.append(("grpc.ssl_target_name_override",
                            tls.get("server_name", "localhost")))
            self.channel = grpc.secure_channel(client.target, creds,
                                               options=options)
        else:
            self.channel = grpc.insecure_channel(client.target,
                                                 options=options)
        self.method = self.channel.stream_stream(
            "/kubenova.v1.OperatorGateway/Connect",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b)

        if opts.get("hello") is not None:
            self.put(self.message({"hello": opts["hello"]}))

        self.call = self.method(self.requests())
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

        if self.hb_every > 0:
            self.start_heartbeats(self.hb_every)

    def message(self, obj):
        from google.protobuf import json_format
        m = self.pb.OperatorMessage()
        json_format.ParseDict(obj, m)
        return m.SerializeToString()

    def put(self, data):
        if self.closed:
            raise RuntimeError("stream %s is half-closed" % self.id)
        self.queued += 1
        self.queue.put(data)

    def requests(self):
        while True:
            data = self.queue.get()
            if data is None:
                return
            yield data

    def read(self):
        pb = self.pb
        try:
            for raw in self.call:
                self.reading.wait()
                self.received += 1
                if self.quiet:
                    continue
                m = pb.ManagerMessage()
                try:
                    m.ParseFromString(raw)
                except Exception as e:  # noqa: BLE001
                    emit({"ev": "garbled", "id": self.id,
                          "error": str(e), "hex": raw[:64].hex()})
                    continue
                kind = m.WhichOneof("body")
                body = getattr(m, kind) if kind else None
                ev = {"ev": "msg", "id": self.id, "type": kind,
                      "msg": self.to_json(body) if body is not None else {},
                      "size": len(raw)}
                if kind == "update":
                    try:
                        ev["msg"]["payload_text"] = body.payload.decode()
                    except UnicodeDecodeError:
                        ev["msg"]["payload_text"] = None
                emit(ev)
                if self.auto_ack and kind in ("update", "delete"):
                    self.put(self.message({"ack": {
                        "kind": body.kind, "name": body.name,
                        "generation": str(body.generation), "ok": True}}))
            code = self.call.code()
            details = self.call.details()
        except grpc.RpcError as e:
            code = e.code()
            details = e.details()
        except Exception as e:  # noqa: BLE001
            code = None
            details = "client exception: %r" % (e,)
        self.hb_stop.set()
        self.closed = True
        self.queue.put(None)
        emit({"ev": "end", "id": self.id,
              "code": code.name if code else "CLIENT",
              "code_num": code.value[0] if code else -1,
              "details": details or "", "received": self.received})
        self.ended.set()
        self.channel.close()

    def to_json(self, body):
        from google.protobuf import json_format
        return json_format.MessageToDict(body, preserving_proto_field_name=True,
                                         including_default_value_fields=True)

    def start_heartbeats(self, every):
        with self.hb_lock:
            self.hb_stop.set()
            self.hb_stop = threading.Event()
            self.hb_every = every
            if every <= 0:
                return
            stop = self.hb_stop

            def beat():
                while not stop.wait(every):
                    if self.closed:
                        return
                    ms = int(time.time() * 1000)
                    try:
                        self.put(self.message(
                            {"heartbeat": {"sent_at_unix_ms": str(ms)}}))
                    except RuntimeError:
                        return
            threading.Thread(target=beat, daemon=True).start()

    def close(self):
        self.hb_stop.set()
        if not self.closed:
            self.closed = True
            self.queue.put(None)

    def cancel(self):
        self.hb_stop.set()
        self.call.cancel()
        self.reading.set()


class Client:
    def __init__(self, target, pb):
        self.target = target
        self.pb = pb
        self.streams = {}

    def stream(self, cmd):
        sid = cmd.get("id")
        if sid not in self.streams:
            raise KeyError("no stream %r" % sid)
        return self.streams[sid]

    def run(self, line):
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "open":
            sid = cmd["id"]
            old = self.streams.get(sid)
            if old is not None and not old.ended.is_set():
                raise ValueError("stream %r is still open" % sid)
            self.streams[sid] = Stream(self, sid, cmd)
        elif op == "send":
            s = self.stream(cmd)
            data = s.message(cmd["msg"])
            data += bytes.fromhex(cmd.get("append_hex", "").replace(" ", ""))
            s.put(data)
            emit({"ev": "sent", "id": s.id, "n": s.queued})
        elif op == "send_raw":
            s = self.stream(cmd)
            data = bytes.fromhex(cmd["hex"].replace(" ", ""))
            s.put(data * int(cmd.get("repeat", 1)))
            emit({"ev": "sent", "id": s.id, "n": s.queued})
        elif op == "heartbeats":
            self.stream(cmd).start_heartbeats(float(cmd.get("every", 0)))
        elif op == "auto_ack":
            self.stream(cmd).auto_ack = bool(cmd.get("on", True))
        elif op == "pause":
            self.stream(cmd).reading.clear()
        elif op == "resume":
            self.stream(cmd).reading.set()
        elif op == "close":
            self.stream(cmd).close()
        elif op == "cancel":
            self.stream(cmd).cancel()
        elif op == "ping":
            emit({"ev": "pong"})
        elif op == "quit":
            return False
        else:
            raise ValueError("unknown op %r" % op)
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--proto", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto",
        "kubenova.proto"))
    args = ap.parse_args()

    client = Client(args.target, load_stubs(args.proto))
    emit({"ev": "ready"})

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            if not client.run(line):
                break
        except Exception as e:  # noqa: BLE001
            emit({"ev": "error", "error": "%s: %r" % (line[:200], e)})

    for s in client.streams.values():
        if not s.ended.is_set():
            s.cancel()
    for s in client.streams.values():
        s.ended.wait(5)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
