"""Replays testdata/client-protocol/vectors.txt through the Python client, over a socket pair
that plays the daemon: what the client reads must mean what the vector says, what it sends must
be the vector's bytes, and every bad frame must cost it the connection."""

import json
import os
import socket
import time
import unittest

import bulkhead_client as bc

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata", "client-protocol",
                       "vectors.txt")


def load():
    out = {}
    with open(VECTORS, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            direction, name, hexed, meaning = line.split(" ", 3)
            out[(direction, name)] = (bytes.fromhex(hexed), json.loads(meaning))
    return out


def jsonable(v):
    """A decoded value as the vectors' JSON says it."""
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": bytes(v).hex()}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


class Vectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = load()

    def fake(self):
        """A client past its handshake, and the daemon's end of its socket."""
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        b.settimeout(5)
        return bc.Client._over(a), b

    def feed(self, peer, *names):
        for n in names:
            peer.sendall(self.v[("daemon", n)][0])

    def sent(self, peer):
        peer.setblocking(False)
        try:
            return peer.recv(1 << 16)
        except BlockingIOError:
            return b""
        finally:
            peer.settimeout(5)

    def test_daemon_frames(self):
        for (direction, name), (raw, meaning) in self.v.items():
            if direction != "daemon":
                continue
            with self.subTest(name=name):
                c, peer = self.fake()
                peer.sendall(raw)
                typ, rid, payload = c._read_frame(time.monotonic() + 5)
                got = {"type": bc.TYPE_NAMES[typ], "id": rid}
                if payload is not None:
                    got["payload"] = jsonable(payload)
                self.assertEqual(got, meaning)
                if typ == bc.ERROR:
                    self.check_error(bc.error_from(payload), meaning["payload"])

    def check_error(self, e, p):
        self.assertIs(type(e), bc.KINDS.get(p["kind"], bc.BulkheadError))
        self.assertEqual(e.kind, p["kind"])
        self.assertEqual(e.message, p["message"])
        for k, want in p.items():
            if k in ("kind", "message"):
                continue
            got = getattr(e, k)
            if k == "cause" and isinstance(want, dict):
                self.assertIsInstance(got, bc.BulkheadError)
                self.check_error(got, want)
            else:
                self.assertEqual(got, want, k)
        self.assertIsNone(e.no_such_field)

    def test_bad_frames(self):
        for (direction, name), (raw, _) in self.v.items():
            if direction != "bad":
                continue
            with self.subTest(name=name):
                c, peer = self.fake()
                peer.sendall(raw)
                peer.shutdown(socket.SHUT_WR)
                with self.assertRaises(bc.ProtocolError):
                    c._read_frame(time.monotonic() + 5)
                with self.assertRaises(bc.ProtocolError):  # the connection is gone
                    c.call("demo", "echo", 1)

    def conversation(self, name, reply, act, first_id=1):
        """Runs act against the daemon's reply; the client must send vector name."""
        c, peer = self.fake()
        c._next = first_id - 1
        self.feed(peer, *reply)
        result = act(c)
        self.assertEqual(self.sent(peer).hex(), self.v[("client", name)][0].hex(), name)
        return c, peer, result

    def test_client_frames(self):
        deadline = 1767225600000000000
        cases = [
            ("request.call", ["reply.call"], 1, lambda c: c.call("demo", "echo", "hi"), "hi"),
            ("request.call.noargs", ["reply.call.null"], 3, lambda c: c.call("demo", "ping"), None),
            ("request.create_instance", ["reply.create_instance"], 4,
             lambda c: vars(c.create_instance("Counter", 10))["handle"], 1),
            ("request.get_class_object", ["reply.get_class_object"], 5,
             lambda c: c.get_class_object("Counter").handle, 2),
            ("request.class_create_instance", ["reply.class_create_instance"], 6,
             lambda c: bc.ClassObject(c, 2, 4242).create_instance().handle, 3),
            ("request.lock_server", ["reply.lock_server"], 7, lambda c: bc.ClassObject(c, 2, 0).lock_server(True),
             None),
            ("request.object_call", ["reply.object_call"], 8, lambda c: bc.Object(c, 1, 0).call("add", 5), 15),
            ("request.clone", ["reply.clone"], 9, lambda c: bc.Object(c, 1, 0).clone().handle, 4),
            ("request.release", [], 10, lambda c: c.release(4), None),
            ("request.rot_register", ["reply.rot_register"], 11,
             lambda c: c.register("counters/main", bc.Object(c, 1, 0), keep_alive=True), None),
            ("request.rot_lookup", ["reply.rot_lookup"], 12, lambda c: c.lookup("counters/main").handle, 5),
            ("request.rot_revoke", ["reply.rot_revoke"], 13, lambda c: c.revoke("counters/main"), None),
            ("request.status", ["reply.status"], 15, lambda c: c.status()["servers"][0]["pid"], 4242),
            ("request.stats", ["reply.stats"], 16, lambda c: c.stats()["pools"]["demo"]["Workers"], 2),
        ]

        def with_deadline(c):
            c._now_ns = lambda: deadline - 5 * 10**9
            return c.call("demo", "checksum", b"abc", 3, timeout=5)

        cases.append(("request.call.deadline", ["reply.call.uint"], 2, with_deadline, (1 << 63) + 5))
        for name, reply, first, act, want in cases:
            with self.subTest(name=name):
                _, _, got = self.conversation(name, reply, act, first)
                self.assertEqual(got, want)

    def test_hello(self):
        for name, arg in (("hello", "example"), ("hello.anonymous", None)):
            with self.subTest(name=name):
                c, peer = self.fake()
                self.feed(peer, "hello")
                c._max_frame = bc.MAX_HELLO
                c._handshake(arg)
                self.assertEqual(self.sent(peer), self.v[("client", name)][0])
                self.assertEqual(c._max_frame, 16 << 20)

    def test_hello_refused(self):
        for name, cls in (("hello.refused.permission_denied", bc.PermissionDenied),
                          ("hello.refused.unsupported_version", bc.ProtocolError),
                          ("hello.refused.protocol", bc.ProtocolError)):
            with self.subTest(name=name):
                c, peer = self.fake()
                self.feed(peer, name)
                with self.assertRaises(cls):
                    c._handshake(None)

    def test_subscription(self):
        c, peer, sub = self.conversation("request.subscribe", ["reply.subscribe"],
                                         lambda c: bc.Object(c, 1, 0).subscribe(buffer=16), 14)
        self.feed(peer, "event", "error.canceled.subscription")
        sub.cancel()
        self.assertEqual(self.sent(peer), self.v[("client", "cancel")][0])
        self.assertEqual(sub.next(timeout=5), ("changed", [15]))
        with self.assertRaises(bc.CanceledError) as e:
            sub.next(timeout=5)
        self.assertEqual(e.exception.cause, "canceled")

    def test_ping_pong(self):
        c, peer = self.fake()
        c._next = 6
        self.feed(peer, "pong")
        c.ping()
        self.assertEqual(self.sent(peer), self.v[("client", "ping")][0])
        # The daemon's PING is answered while a request waits.
        c, peer = self.fake()
        self.feed(peer, "ping", "reply.call")
        self.assertEqual(c.call("demo", "echo", "hi"), "hi")
        self.assertEqual(self.sent(peer), self.v[("client", "request.call")][0] + self.v[("client", "pong")][0])

    def test_timeout_cancels(self):
        c, peer = self.fake()
        c.grace = 0
        with self.assertRaises(bc.Timeout):
            c.call("demo", "echo", "hi", timeout=0.05)
        sent = self.sent(peer)
        length = int.from_bytes(sent[:4], "little")
        self.assertEqual((sent[4], sent[8:16]), (bc.REQUEST, (1).to_bytes(8, "little")))
        self.assertIn("deadline", bc.decode(sent[16:16 + length]))
        self.assertEqual(sent[16 + length:], bc.frame(bc.CANCEL, 1))
        # The late answer is dropped; the client goes on.
        peer.sendall(bc.frame(bc.REPLY, 1, bc.encode({"result": "late"})))
        peer.sendall(bc.frame(bc.REPLY, 2, bc.encode({"result": "hi"})))
        self.assertEqual(c.call("demo", "echo", "hi"), "hi")

    def test_encoding_error(self):
        c, _ = self.fake()
        with self.assertRaises(bc.EncodingError):
            c.call("demo", "echo", object())


if __name__ == "__main__":
    unittest.main()
