"""End to end: the Python client against a `bulkhead serve` this test starts on the shipped
example config (examples/serve/bulkhead.toml). BULKHEAD_BIN names a built bulkhead command;
without it the test builds one with `go build`."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import bulkhead_client as bc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="bhpy")
        binary = os.environ.get("BULKHEAD_BIN")
        if not binary:
            binary = os.path.join(cls.dir, "bulkhead")
            subprocess.run(["go", "build", "-o", binary, "./cmd/bulkhead"], cwd=ROOT, check=True)
        cls.sock = os.path.join(cls.dir, "bulkhead.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(os.path.join(cls.dir, "notify"))
        notify.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(cls.dir, "notify"))
        cls.stderr = open(os.path.join(cls.dir, "stderr"), "w+")
        cls.daemon = subprocess.Popen(
            [binary, "serve", "--config", os.path.join(ROOT, "examples", "serve", "bulkhead.toml"),
             "--socket", cls.sock], env=env, stderr=cls.stderr)
        try:
            while b"READY=1" not in notify.recv(4096).split(b"\n"):  # sd_notify: the daemon serves
                pass
        except BaseException:
            cls.stop()
            raise
        finally:
            notify.close()

    @classmethod
    def tearDownClass(cls):
        pids = []
        try:
            with bc.Client(cls.sock, timeout=10) as c:
                st = c.status()
            pids = [w["pid"] for p in st["pools"] for w in p["workers"]] + [s["pid"] for s in st.get("servers") or []]
        finally:
            code = cls.stop()
        if code != 0:
            raise AssertionError("the daemon exited with %s:\n%s" % (code, cls.log()))
        for pid in pids:  # the daemon reaped its workers and servers before it exited
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            raise AssertionError("process %d of the daemon's outlived it" % pid)

    @classmethod
    def stop(cls):
        cls.daemon.terminate()
        try:
            code = cls.daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.daemon.kill()
            cls.daemon.wait()
            code = "a timeout (SIGKILL after 20 s)"
        cls.stderr.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        return code

    @classmethod
    def log(cls):
        try:
            with open(os.path.join(cls.dir, "stderr")) as f:
                return f.read()
        except OSError:
            return ""

    def client(self):
        c = bc.Client(self.sock, name="test_e2e", timeout=10)
        self.addCleanup(c.close)
        return c

    def test_call(self):
        c = self.client()
        self.assertEqual(c.call("demo", "echo", "hello"), "hello")
        self.assertEqual(c.call("demo", "echo", {"a": [1, -2, b"\x00"]}), {"a": [1, -2, b"\x00"]})

    def test_typed_errors(self):
        c = self.client()
        with self.assertRaises(bc.RemoteError) as e:
            c.call("demo", "nope")
        self.assertEqual((e.exception.code, e.exception.method), (2, "nope"))
        self.assertGreater(e.exception.pid, 0)
        with self.assertRaises(bc.PermissionDenied):  # a pool that does not exist is not told apart
            c.call("nopool", "echo", 1)
        c.release(999)  # one-way: its ERROR (not_found) is dropped
        self.assertEqual(c.call("demo", "echo", 2), 2)  # errors cost nothing

    def test_objects(self):
        c = self.client()
        with c.create_instance("Counter", 10) as counter:
            self.assertGreater(counter.pid, 0)
            self.assertEqual(counter.call("add", 5), 15)
            other = counter.clone()
            self.assertEqual(other.call("add", 1), 16)
            other.release()
            with self.assertRaises(bc.NotFound):
                other.call("get")
            self.assertEqual(counter.call("get"), 16)

    def test_class_object(self):
        c = self.client()
        with c.get_class_object("Counter") as co:
            co.lock_server(True)
            with co.create_instance(3) as o:
                self.assertEqual(o.call("get"), 3)
            co.lock_server(False)

    def test_rot_across_clients(self):
        a, b = self.client(), self.client()
        o = a.create_instance("Counter", 7)
        a.register("py/counter", o)
        with b.lookup("py/counter") as same:
            self.assertEqual(same.call("add", 1), 8)
        with self.assertRaises(bc.ActivationError):
            a.register("py/counter", o)  # name_in_use
        a.revoke("py/counter")
        with self.assertRaises(bc.NotFound):  # as for a name of a class b may not use: b learns nothing
            b.lookup("py/counter")

    def test_subscription_cancel(self):
        c = self.client()
        with c.create_instance("Counter") as o:
            sub = o.subscribe()
            sub.cancel()
            with self.assertRaises(bc.CanceledError) as e:
                sub.next(timeout=10)
            self.assertEqual(e.exception.cause, "canceled")
            self.assertEqual(o.call("add", 2), 2)

    def test_status_and_stats(self):
        c = self.client()
        st = c.status()
        demo = [p for p in st["pools"] if p["name"] == "demo"]
        self.assertEqual(len(demo), 1)
        self.assertTrue(all(w["pid"] > 0 for w in demo[0]["workers"]))
        self.assertIn("demo", c.stats()["pools"])
        c.ping()

    def test_example(self):
        out = subprocess.run([sys.executable, os.path.join(HERE, "example.py"), self.sock], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, re.compile(r"""\Aecho: hello
nope: remote \(code 2\) in nope: unknown method "nope"; the worker's methods: .*echo.*
Counter: handle 1, server pid [1-9][0-9]*
add\(5\) = 15
add\(5\) = 20
get after release: not_found
\Z"""))


if __name__ == "__main__":
    unittest.main()
