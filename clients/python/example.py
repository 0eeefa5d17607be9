"""A Python client of `bulkhead serve`: it calls the demo pool's echo, shows a typed error,
activates a Counter and calls its add.

    go run ./cmd/bulkhead serve --config examples/serve/bulkhead.toml &
    python3 clients/python/example.py /tmp/bulkhead.sock
"""

import sys

from bulkhead_client import Client, NotFound, RemoteError


def main(path):
    with Client(path, name="example.py", timeout=5) as c:
        print("echo:", c.call("demo", "echo", "hello"))
        try:
            c.call("demo", "nope")
        except RemoteError as e:  # the kind's fields are attributes
            print("nope: %s (code %d) in %s: %s" % (e.kind, e.code, e.method, e.message))
        counter = c.create_instance("Counter", 10)
        print("Counter: handle %d, server pid %d" % (counter.handle, counter.pid))
        for _ in range(2):
            print("add(5) =", counter.call("add", 5))
        counter.release()
        try:
            counter.call("get")
        except NotFound as e:
            print("get after release:", e.kind)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bulkhead.sock")
