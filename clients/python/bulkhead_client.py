"""A Python client of `bulkhead serve` (docs/CLIENT-PROTOCOL.md): pure stdlib plus cbor2.

    from bulkhead_client import Client, RemoteError

    with Client("/tmp/bulkhead.sock", name="myprog", timeout=5) as c:
        print(c.call("demo", "echo", "hello"))          # hello
        with c.create_instance("Counter", 10) as counter:
            print(counter.call("add", 5))               # 15

A failed operation raises a BulkheadError subclass chosen by the ERROR's kind (section 7), with
the kind's fields as attributes (CrashError.signal, RemoteError.code, ...); a field the ERROR did
not carry reads as None. Everything the daemon sends is checked before it is used: the frame
header (type, flags, length against the daemon's max_frame) before anything is read into memory,
and every payload against PROTOCOL.md section 5. A daemon that breaks the protocol costs the client
its connection (ProtocolError), nothing more.

A Client is one connection. Its requests run one at a time (a lock serialises them), so use one
Client per thread for parallel calls.

It speaks the daemon's Unix socket only. Connected to a cluster node's socket (`bulkhead serve
--nats`), it calls that node's pools and objects, run by that machine's workers: no dispatch to the
other nodes, no failover when that node goes. Only the Go client (client.DialNATS) is a client of
the cluster.
"""

import collections
import socket
import struct
import threading
import time

try:
    import cbor2
except ImportError as e:  # the one dependency: say how to get it, for this interpreter
    import sys
    raise ImportError(
        "bulkhead_client needs cbor2, which %s does not have: run `%s -m pip install cbor2`, or on "
        "Debian/Ubuntu `apt-get install python3-cbor2` and use /usr/bin/python3 (a pyenv or venv "
        "python3 does not see Debian's packages)" % (sys.executable, sys.executable)) from e

PROTOCOL = 1
HELLO, REQUEST, REPLY, ERROR, CANCEL, PING, PONG, EVENT = 1, 2, 3, 4, 5, 7, 8, 23
TYPE_NAMES = {HELLO: "HELLO", REQUEST: "REQUEST", REPLY: "REPLY", ERROR: "ERROR", CANCEL: "CANCEL",
              PING: "PING", PONG: "PONG", EVENT: "EVENT"}
DAEMON_TYPES = frozenset((HELLO, REPLY, ERROR, PING, PONG, EVENT))
HEADER = struct.Struct("<IBBHQ")  # length, type, flags, reserved, id
MAX_HELLO = 64 << 10
MAX_MAX_FRAME = 1 << 30
MAX_DEPTH = 32
MAX_ITEMS = 131072
GRACE = 1.0  # seconds waited past a request's deadline for the daemon's answer


# ---- errors (section 7) -------------------------------------------------------------------------

class BulkheadError(Exception):
    """An ERROR from the daemon, or a failure of the client's own (kinds "connection", "timeout")."""

    def __init__(self, kind, message, fields=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = dict(fields or {})

    def __getattr__(self, name):
        if name.startswith("_") or name == "fields":
            raise AttributeError(name)
        return self.fields.get(name)

    def __str__(self):
        return "%s: %s" % (self.kind, self.message)


class ConnectionLost(BulkheadError):
    """The daemon cannot be reached, or the connection ended: the client is unusable."""


class Timeout(BulkheadError):
    """No answer within the request's timeout plus a second; the daemon was sent CANCEL."""


class ProtocolError(BulkheadError):
    """Kinds protocol and unsupported_version, or a daemon that broke the protocol."""


class CrashError(BulkheadError):
    """The worker died: phase, pid, request_id, method, exit_code, signal, core_dumped, killed..."""


class StartError(BulkheadError):
    """No worker could be started: pid, exit_code, signal, exited, reason, stderr."""


class CanceledError(BulkheadError):
    """The request was abandoned: cause is "deadline" or "canceled"."""


class OverloadedError(BulkheadError):
    pass


class UnhealthyError(BulkheadError):
    pass


class QuarantinedError(BulkheadError):
    pass


class RemoteError(BulkheadError):
    """The worker or object answered ERROR: code, details, method, request_id, pid."""


class DisconnectedError(BulkheadError):
    """The object's server is gone: class, object, pid; cause is the error it died of, or None."""


class ClosedError(BulkheadError):
    pass


class EncodingError(BulkheadError):
    pass


class PermissionDenied(BulkheadError):
    pass


class NotFound(BulkheadError):
    pass


class BadRequest(BulkheadError):
    pass


class LimitError(BulkheadError):
    """Kind too_many: a per-connection limit of the daemon's."""


class SlowSubscriber(BulkheadError):
    pass


class ActivationError(BulkheadError):
    """The activation package's kinds: released, unknown_class, name_in_use, server_stopping..."""


KINDS = {
    "crash": CrashError, "start": StartError, "canceled": CanceledError, "overloaded": OverloadedError,
    "unhealthy": UnhealthyError, "quarantined": QuarantinedError, "remote": RemoteError,
    "disconnected": DisconnectedError, "closed": ClosedError, "encoding": EncodingError,
    "permission_denied": PermissionDenied, "not_found": NotFound, "bad_request": BadRequest,
    "too_many": LimitError, "slow_subscriber": SlowSubscriber, "protocol": ProtocolError,
    "unsupported_version": ProtocolError, "connection": ConnectionLost, "timeout": Timeout,
}
for _kind in ("released", "unknown_class", "class_not_registered", "not_locked", "too_many_objects",
              "name_in_use", "not_registered", "rot_full", "invalid_name", "server_stopping",
              "session_closed"):
    KINDS[_kind] = ActivationError


def error_from(payload):
    """The exception for an ERROR payload (a decoded map)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("kind"), str):
        return ProtocolError("protocol", "the daemon sent an ERROR without a kind")
    fields = {k: v for k, v in payload.items() if k not in ("kind", "message") and isinstance(k, str)}
    if payload["kind"] == "disconnected" and isinstance(fields.get("cause"), dict):
        fields["cause"] = error_from(fields["cause"])
    message = payload.get("message")
    cls = KINDS.get(payload["kind"], BulkheadError)
    return cls(payload["kind"], message if isinstance(message, str) else "", fields)


# ---- checking values (PROTOCOL.md section 5) ----------------------------------------------------

def _head(p, i):
    """The head at p[i]: (major, info, argument, index after the head)."""
    if i >= len(p):
        raise ValueError("truncated CBOR")
    major, info = p[i] >> 5, p[i] & 31
    i += 1
    if info < 24:
        return major, info, info, i
    if info <= 27:
        n = 1 << (info - 24)
        if len(p) - i < n:
            raise ValueError("truncated CBOR")
        return major, info, int.from_bytes(p[i:i + n], "big"), i + n
    if info == 31:
        raise ValueError("an indefinite-length item")
    raise ValueError("a reserved additional information value")


def _item(p, i, level):
    """Checks the item at p[i] and returns the index after it."""
    if level > MAX_DEPTH:
        raise ValueError("nested deeper than %d" % MAX_DEPTH)
    major, info, arg, i = _head(p, i)
    if major in (0, 1):
        return i
    if major in (2, 3):
        if arg > len(p) - i:
            raise ValueError("a string longer than the payload")
        if major == 3:
            bytes(p[i:i + arg]).decode("utf-8")  # raises UnicodeDecodeError, a ValueError
        return i + arg
    if major in (4, 5):
        if arg > MAX_ITEMS:
            raise ValueError("more than %d items" % MAX_ITEMS)
        if arg * (2 if major == 5 else 1) > len(p) - i:
            raise ValueError("more items than bytes")
        keys = set()
        for _ in range(arg):
            if major == 5:
                kmajor, kinfo, karg, _ = _head(p, i)
                if kmajor not in (0, 1, 3) or (kmajor == 1 and karg >= 1 << 63):
                    raise ValueError("a map key that is not text or a 64-bit integer")
                # by value, not bytes: a key's head need not be in its shortest form
                key = (kmajor, karg) if kmajor != 3 else (3, bytes(p[_head(p, i)[3]:_item(p, i, level + 1)]))
                i = _item(p, i, level + 1)
                if key in keys:
                    raise ValueError("a duplicate map key")
                keys.add(key)
            i = _item(p, i, level + 1)
        return i
    if major == 6:
        raise ValueError("a tag")
    if info in (20, 21, 22, 25, 26, 27):
        return i
    raise ValueError("a simple value other than false, true and null")


def check(p, level=1):
    """Raises ValueError unless p is exactly one item that keeps PROTOCOL.md section 5."""
    if _item(p, 0, level) != len(p):
        raise ValueError("bytes after the item")


def decode(p):
    """A checked payload, decoded."""
    check(p)
    return cbor2.loads(bytes(p))


def encode(v):
    """v in CBOR, map keys in core deterministic order (as the daemon writes them)."""
    return cbor2.dumps(v, canonical=True)


def parse_header(b, max_frame):
    """(type, id, length) of a daemon's frame header; ProtocolError if it is refused."""
    length, typ, flags, reserved, rid = HEADER.unpack(b)
    why = None
    if typ not in DAEMON_TYPES:
        why = "a frame of type %d, which the daemon does not send" % typ
    elif flags:
        why = "non-zero flags"
    elif reserved:
        why = "non-zero reserved bytes"
    elif length > max_frame:
        why = "a frame of %d bytes, over max_frame (%d)" % (length, max_frame)
    if why:
        raise ProtocolError("protocol", "the daemon broke the protocol: " + why)
    return typ, rid, length


def frame(typ, rid, payload=b""):
    return HEADER.pack(len(payload), typ, 0, 0, rid) + payload


# ---- the client ---------------------------------------------------------------------------------

class Client:
    """One connection to the daemon. timeout (seconds) bounds the connection and the handshake,
    and is every request's default deadline; None: no deadline (the daemon's max_deadline still
    bounds every request). Closing it releases every reference it held, in the daemon."""

    def __init__(self, path, name=None, timeout=None):
        if name is not None and len(name.encode()) > 256:
            raise ValueError("a name of at most 256 bytes")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise ConnectionLost("connection", "connecting to %s: %s" % (path, e)) from None
        self._setup(sock, timeout)
        try:
            self._handshake(name)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def _over(cls, sock, max_frame=16 << 20, timeout=None):
        """A client on a connected socket past the handshake (for tests)."""
        c = cls.__new__(cls)
        c._setup(sock, timeout)
        c._max_frame = max_frame
        return c

    def _setup(self, sock, timeout):
        self._sock = sock
        self.timeout = timeout
        self._max_frame = MAX_HELLO
        self._next = 0
        self._broken = None  # the error that made the connection unusable
        self._lock = threading.RLock()
        self._events = {}  # subscription id -> deque of (name, args)
        self._ended = {}  # subscription id -> the error that ended it
        self._buf = bytearray()
        self._now_ns = time.time_ns  # the wall clock, for deadlines
        self.grace = GRACE  # seconds waited past a deadline for the daemon's answer

    def _handshake(self, name):
        hello = {"protocol": PROTOCOL}
        if name:
            hello["name"] = name
        deadline = time.monotonic() + self.timeout if self.timeout else None
        self._send(frame(HELLO, 0, encode(hello)), deadline)
        typ, rid, payload = self._read_frame(deadline)
        if typ == ERROR:
            raise error_from(payload)
        if (typ != HELLO or rid != 0 or not isinstance(payload, dict) or payload.get("protocol") != PROTOCOL
                or not isinstance(payload.get("max_frame"), int)
                or not 1024 <= payload["max_frame"] <= MAX_MAX_FRAME):
            raise ProtocolError("protocol", "the daemon's HELLO is malformed")
        self._max_frame = payload["max_frame"]

    def close(self):
        """Ends the connection; the daemon releases every reference the client held."""
        self._sock.close()
        if self._broken is None:
            self._broken = ConnectionLost("connection", "the client was closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- framing --

    def _fail(self, err):
        """Makes the connection unusable for err, and returns err to raise."""
        self._broken = err
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return err

    def _send(self, data, deadline):
        try:
            self._sock.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(data)
        except socket.timeout:
            raise self._fail(Timeout("timeout", "sending to the daemon timed out")) from None
        except OSError as e:
            raise self._fail(ConnectionLost("connection", "sending: %s" % e)) from None

    def _read(self, n, deadline, started):
        while len(self._buf) < n:
            try:
                self._sock.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
                chunk = self._sock.recv(max(n - len(self._buf), 65536))
            except socket.timeout:
                err = Timeout("timeout", "no answer from the daemon in time")
                if started or self._buf:  # a frame cut in two leaves the stream unreadable
                    raise self._fail(err) from None
                raise err from None
            except OSError as e:
                raise self._fail(ConnectionLost("connection", "reading: %s" % e)) from None
            if not chunk:
                raise self._fail(ConnectionLost("connection", "the daemon closed the connection"))
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _read_frame(self, deadline):
        """The next frame: (type, id, decoded payload or None)."""
        head = self._read(HEADER.size, deadline, False)
        try:
            typ, rid, length = parse_header(head, self._max_frame)
        except ProtocolError as e:
            raise self._fail(e) from None
        payload = self._read(length, deadline, True) if length else b""
        if not payload:
            return typ, rid, None
        try:
            return typ, rid, decode(payload)
        except (ValueError, cbor2.CBORDecodeError) as e:
            raise self._fail(ProtocolError("protocol", "the daemon broke the protocol: %s" % e)) from None

    # -- requests --

    def _request(self, op, fields, args=(), timeout=0, subscription=False):
        """Sends REQUEST op and returns its REPLY's payload (a dict)."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if timeout == 0:
                timeout = self.timeout
            req = dict(fields, op=op)
            if args:
                req["args"] = list(args)
            deadline = None
            if timeout:
                req["deadline"] = self._now_ns() + int(timeout * 1e9)
                deadline = time.monotonic() + timeout + self.grace
            try:
                payload = encode(req)
            except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
                raise EncodingError("encoding", "the arguments cannot be encoded: %s" % e) from None
            if len(payload) > self._max_frame:
                raise EncodingError("encoding", "a request of %d bytes, over max_frame" % len(payload))
            self._next += 1
            rid = self._next
            if subscription:
                self._events[rid] = collections.deque()
            self._send(frame(REQUEST, rid, payload), deadline)
            try:
                return rid, self._await(rid, deadline)
            except Timeout:
                if self._broken is None:
                    self._send(frame(CANCEL, rid), time.monotonic() + GRACE)
                raise

    def _await(self, rid, deadline, events=False):
        """Reads frames until the answer to rid (or, with events, one of its EVENTs)."""
        while True:
            typ, fid, payload = self._read_frame(deadline)
            if typ == PING:
                self._send(frame(PONG, fid), deadline)
            elif typ == HELLO:
                raise self._fail(ProtocolError("protocol", "the daemon sent HELLO after the handshake"))
            elif typ == ERROR and fid == 0:
                raise self._fail(error_from(payload))
            elif typ == EVENT and fid in self._events:
                if not isinstance(payload, list) or len(payload) != 2 or not isinstance(payload[1], list):
                    raise self._fail(ProtocolError("protocol", "an EVENT that is not [name, args]"))
                self._events[fid].append((payload[0], payload[1]))
                if events and fid == rid:
                    return None
            elif typ == ERROR and fid in self._events and fid != rid:
                self._ended[fid] = error_from(payload)
            elif typ in (REPLY, ERROR) and fid == rid:
                if typ == ERROR:
                    if rid in self._events:
                        self._ended[rid] = error_from(payload)
                        if events:
                            return None
                    raise error_from(payload)
                if not isinstance(payload, dict):
                    raise self._fail(ProtocolError("protocol", "a REPLY that is not a map"))
                return payload
            # else PONG, or the late answer of a request given up: dropped

    def _handle(self, reply, key):
        v = reply.get(key)
        if not isinstance(v, int) or v <= 0:
            raise self._fail(ProtocolError("protocol", "the daemon's REPLY lacks %s" % key))
        return v

    def ping(self):
        """Sends PING and waits for its PONG."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            deadline = time.monotonic() + (self.timeout or 10) + GRACE
            self._next += 1
            self._send(frame(PING, self._next), deadline)
            while True:
                typ, fid, _ = self._read_frame(deadline)
                if typ == PONG and fid == self._next:
                    return

    # -- operations (section 5) --

    def call(self, pool, method, *args, timeout=0):
        """Calls method on the daemon's pool; returns its result."""
        return self._request("call", {"pool": pool, "method": method}, args, timeout)[1].get("result")

    def create_instance(self, class_name, *args, timeout=0):
        rep = self._request("create_instance", {"class": class_name}, args, timeout)[1]
        return Object(self, self._handle(rep, "object"), rep.get("pid"))

    def get_class_object(self, class_name, timeout=0):
        rep = self._request("get_class_object", {"class": class_name}, (), timeout)[1]
        return ClassObject(self, self._handle(rep, "class_object"), rep.get("pid"))

    def lookup(self, name, timeout=0):
        """The object registered under name in the running object table."""
        rep = self._request("rot_lookup", {"name": name}, (), timeout)[1]
        return Object(self, self._handle(rep, "object"), rep.get("pid"))

    def register(self, name, obj, keep_alive=False, timeout=0):
        """Registers obj under name; the name goes with this connection unless keep_alive."""
        fields = {"name": name, "object": obj.handle}
        if keep_alive:
            fields["keep_alive"] = True
        self._request("rot_register", fields, (), timeout)

    def revoke(self, name, timeout=0):
        self._request("rot_revoke", {"name": name}, (), timeout)

    def release(self, handle, timeout=0):
        """Sends the release and returns: the daemon carries it out before the next request, and
        answers only if it fails (section 5.2), an ERROR dropped as the answer nobody waits for."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            timeout = timeout or self.timeout
            deadline = time.monotonic() + timeout + self.grace if timeout else None
            self._next += 1
            self._send(frame(REQUEST, self._next, encode({"op": "release", "handle": handle})), deadline)

    def status(self, timeout=0):
        return self._request("status", {}, (), timeout)[1]

    def stats(self, timeout=0):
        return self._request("stats", {}, (), timeout)[1]


class _Handle:
    """One reference held by the connection; release (or the end of a with block) gives it up."""

    def __init__(self, client, handle, pid):
        self.client, self.handle, self.pid = client, handle, pid

    def release(self, timeout=0):
        self.client.release(self.handle, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class Object(_Handle):
    """A reference to an object in a class server."""

    def call(self, method, *args, timeout=0):
        fields = {"object": self.handle, "method": method}
        return self.client._request("object_call", fields, args, timeout)[1].get("result")

    def clone(self, timeout=0):
        rep = self.client._request("clone", {"object": self.handle}, (), timeout)[1]
        return Object(self.client, self.client._handle(rep, "object"), rep.get("pid", self.pid))

    def subscribe(self, buffer=0, timeout=0):
        """The object's events, buffer of them queued at most in the daemon (0: 64)."""
        fields = {"object": self.handle}
        if buffer:
            fields["buffer"] = buffer
        rid, _ = self.client._request("subscribe", fields, (), timeout, subscription=True)
        return Subscription(self.client, rid)


class ClassObject(_Handle):
    """A reference to a class's class object (COM's IClassFactory)."""

    def create_instance(self, *args, timeout=0):
        rep = self.client._request("class_create_instance", {"class_object": self.handle}, args, timeout)[1]
        return Object(self.client, self.client._handle(rep, "object"), rep.get("pid"))

    def lock_server(self, lock=True, timeout=0):
        self.client._request("lock_server", {"class_object": self.handle, "lock": lock}, (), timeout)


class Subscription:
    """An object's events: next() returns (name, args), or raises the error that ended it
    (CanceledError after cancel(), SlowSubscriber, DisconnectedError)."""

    def __init__(self, client, rid):
        self.client, self.id = client, rid

    def next(self, timeout=None):
        c = self.client
        with c._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if c._events.get(self.id):
                    return c._events[self.id].popleft()
                if self.id in c._ended:
                    c._events.pop(self.id, None)
                    raise c._ended.pop(self.id)
                if c._broken is not None:
                    raise c._broken
                c._await(self.id, deadline, events=True)

    def cancel(self):
        """Asks the daemon to end the subscription; next() then raises CanceledError."""
        with self.client._lock:
            if self.client._broken is None:
                self.client._send(frame(CANCEL, self.id), time.monotonic() + GRACE)
