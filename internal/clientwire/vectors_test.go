package clientwire_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// The conformance vectors of docs/CLIENT-PROTOCOL.md, made here from the
// daemon's own encoders so that they are exact. Regenerate them with
//
//	go test ./internal/clientwire -run TestVectors -update
var update = flag.Bool("update", false, "rewrite testdata/client-protocol/vectors.txt")

const vectorsFile = "../../testdata/client-protocol/vectors.txt"

// vector is one frame: who sends it, its name, what it is for, and its bytes.
type vector struct {
	dir, name, about string
	frame            []byte
}

// deadline is the fixed absolute deadline of the vectors' requests.
const deadline = 1767225600000000000 // 2026-01-01T00:00:00Z

func frame(t *testing.T, typ wire.Type, id uint64, v any) []byte {
	t.Helper()
	f, err := clientwire.Frame(nil, typ, id, v)
	if err != nil {
		t.Fatalf("encoding %v: %v", v, err)
	}
	return f
}

func raw(t *testing.T, v any) cbor.RawMessage {
	t.Helper()
	p, err := wire.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func args(t *testing.T, vs ...any) []cbor.RawMessage {
	out := make([]cbor.RawMessage, len(vs))
	for i, v := range vs {
		out[i] = raw(t, v)
	}
	return out
}

// resultFrame is a REPLY with result r as the daemon writes it (sendResult).
func resultFrame(id uint64, r []byte) []byte {
	if r == nil {
		r = []byte{0xf6}
	}
	p := append([]byte{0xa1, 0x66}, "result"...)
	return clientwire.RawFrame(nil, clientwire.TypeReply, id, append(p, r...))
}

// errFrame is ERROR id for err, as the daemon's fail sends it; msg, if not
// empty, replaces the message.
func errFrame(t *testing.T, id uint64, err error, msg string) []byte {
	m := clientwire.EncodeError(err)
	if msg != "" {
		m["message"] = msg
	}
	return frame(t, clientwire.TypeError, id, m)
}

func buildVectors(t *testing.T) []vector {
	var vs []vector
	add := func(dir, name, about string, f []byte) { vs = append(vs, vector{dir, name, about, f}) }
	c, d := "client", "daemon"
	req := func(id uint64, r clientwire.Request) []byte { return frame(t, clientwire.TypeRequest, id, r) }
	rep := func(id uint64, r any) []byte { return frame(t, clientwire.TypeReply, id, r) }

	// Section 4: the handshake.
	add(c, "hello", "HELLO with the client's name", frame(t, clientwire.TypeHello, 0, clientwire.Hello{Protocol: 1, Name: "example"}))
	add(c, "hello.anonymous", "HELLO without a name", frame(t, clientwire.TypeHello, 0, clientwire.Hello{Protocol: 1}))
	add(c, "hello.v2", "HELLO for a version the daemon does not speak", frame(t, clientwire.TypeHello, 0, clientwire.Hello{Protocol: 2}))
	add(d, "hello", "the daemon's HELLO: its version and frame limit", frame(t, clientwire.TypeHello, 0, clientwire.Hello{Protocol: 1, MaxFrame: wire.DefaultMaxFrame}))
	add(d, "hello.refused.permission_denied", "the peer may use nothing here; the daemon closes the connection",
		errFrame(t, 0, clientwire.ErrPermission, "permission denied"))
	add(d, "hello.refused.unsupported_version", "the answer to hello.v2; the daemon closes the connection",
		frame(t, clientwire.TypeError, 0, map[string]any{"kind": "unsupported_version", "message": "protocol 2 is not spoken here (1 is)"}))
	add(d, "hello.refused.protocol", "the first frame was not HELLO; the daemon closes the connection",
		errFrame(t, 0, clientwire.ErrProtocol, "the first frame must be HELLO with id 0"))

	// Section 5: a REQUEST per op, and its REPLY.
	add(c, "request.call", "call pool demo's echo with \"hi\", no deadline",
		req(1, clientwire.Request{Op: clientwire.OpCall, Pool: "demo", Method: "echo", Args: args(t, "hi")}))
	add(d, "reply.call", "its result", resultFrame(1, raw(t, "hi")))
	add(c, "request.call.deadline", "a call with a deadline and two arguments",
		req(2, clientwire.Request{Op: clientwire.OpCall, Deadline: deadline, Pool: "demo", Method: "checksum", Args: args(t, []byte("abc"), 3)}))
	add(d, "reply.call.uint", "a large unsigned result", resultFrame(2, raw(t, uint64(1)<<63+5)))
	add(c, "request.call.noargs", "a call without arguments: args is absent",
		req(3, clientwire.Request{Op: clientwire.OpCall, Pool: "demo", Method: "ping"}))
	add(d, "reply.call.null", "a method that returned nothing: result null", resultFrame(3, nil))
	add(c, "request.create_instance", "activate a Counter starting at 10",
		req(4, clientwire.Request{Op: clientwire.OpCreateInstance, Class: "Counter", Args: args(t, 10)}))
	add(d, "reply.create_instance", "handle 1 on this connection, in server 4242",
		rep(4, clientwire.Reply{Object: 1, PID: 4242}))
	add(c, "request.get_class_object", "a handle to class Counter's class object",
		req(5, clientwire.Request{Op: clientwire.OpGetClassObject, Class: "Counter"}))
	add(d, "reply.get_class_object", "class object handle 2", rep(5, clientwire.Reply{ClassObject: 2, PID: 4242}))
	add(c, "request.class_create_instance", "an object from class object 2",
		req(6, clientwire.Request{Op: clientwire.OpClassCreateInstance, ClassObject: 2}))
	add(d, "reply.class_create_instance", "object handle 3", rep(6, clientwire.Reply{Object: 3, PID: 4242}))
	add(c, "request.lock_server", "keep the class's server running",
		req(7, clientwire.Request{Op: clientwire.OpLockServer, ClassObject: 2, Lock: true}))
	add(d, "reply.lock_server", "an empty map", rep(7, struct{}{}))
	add(c, "request.object_call", "Counter.add(5) on object 1",
		req(8, clientwire.Request{Op: clientwire.OpObjectCall, Object: 1, Method: "add", Args: args(t, 5)}))
	add(d, "reply.object_call", "the new total", resultFrame(8, raw(t, 15)))
	add(c, "request.clone", "a second handle to object 1", req(9, clientwire.Request{Op: clientwire.OpClone, Object: 1}))
	add(d, "reply.clone", "handle 4", rep(9, clientwire.Reply{Object: 4, PID: 4242}))
	add(c, "request.release", "give up handle 4; one-way: the daemon answers only if it fails (error.not_found)",
		req(10, clientwire.Request{Op: clientwire.OpRelease, Handle: 4}))
	add(c, "request.rot_register", "register object 1 under a name that outlives the connection",
		req(11, clientwire.Request{Op: clientwire.OpROTRegister, Name: "counters/main", Object: 1, KeepAlive: true}))
	add(d, "reply.rot_register", "an empty map", rep(11, struct{}{}))
	add(c, "request.rot_lookup", "look the name up", req(12, clientwire.Request{Op: clientwire.OpROTLookup, Name: "counters/main"}))
	add(d, "reply.rot_lookup", "a new handle to the registered object", rep(12, clientwire.Reply{Object: 5, PID: 4242}))
	add(c, "request.rot_revoke", "revoke the name", req(13, clientwire.Request{Op: clientwire.OpROTRevoke, Name: "counters/main"}))
	add(d, "reply.rot_revoke", "an empty map", rep(13, struct{}{}))
	add(c, "request.subscribe", "object 1's events, 16 queued at most",
		req(14, clientwire.Request{Op: clientwire.OpSubscribe, Object: 1, Buffer: 16}))
	add(d, "reply.subscribe", "the subscription is on; EVENTs with id 14 follow", rep(14, clientwire.Reply{Subscribed: true}))
	add(d, "event", "an event of subscription 14: [name, args]", frame(t, clientwire.TypeEvent, 14, []any{"changed", args(t, 15)}))
	add(c, "cancel", "end subscription 14 (or give up any request)", clientwire.RawFrame(nil, clientwire.TypeCancel, 14, nil))
	add(d, "error.canceled.subscription", "the end of subscription 14 after its CANCEL",
		errFrame(t, 14, &bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled}, "subscription ended"))
	add(c, "request.status", "the daemon's status", req(15, clientwire.Request{Op: clientwire.OpStatus}))
	add(d, "reply.status", "one pool with one worker, one class server", rep(15, map[string]any{
		"pools": []map[string]any{{"name": "demo", "in_flight": 1, "waiting": 0, "crashes": 2, "workers": []map[string]any{
			{"pid": 4243, "state": "busy", "in_flight": 1, "capacity": 1, "since": int64(1767225600000000000), "name": ""}}}},
		"servers": []map[string]any{{"name": "counter", "pid": 4242, "state": "running", "objects": 3, "locks": 4, "classes": []string{"Counter"}}},
	}))
	add(c, "request.stats", "the daemon's counters", req(16, clientwire.Request{Op: clientwire.OpStats}))
	// Some of bulkhead.Stats's and activation.ActivatorStats's fields, as
	// the daemon encodes them: not the structs themselves, which gain
	// fields (a client must take keys it does not know), so that a new
	// counter does not change the vectors.
	add(d, "reply.stats", "pool stats and activator stats (some of their fields), keyed by their Go field names", rep(16, map[string]any{
		"pools": map[string]any{"demo": map[string]any{"Workers": 2, "InFlight": 1, "Started": uint64(3), "CallCrashes": uint64(1),
			"RespawnP50": 1500 * time.Microsecond, "Unhealthy": false, "RecycledByReason": map[string]uint64(nil)}},
		"activator": map[string]any{"Servers": 1, "Objects": 3, "Sessions": 2},
	}))

	// Section 3: PING and PONG, either way.
	add(c, "ping", "a PING from the client", clientwire.RawFrame(nil, clientwire.TypePing, 7, nil))
	add(d, "pong", "its PONG: same id", clientwire.RawFrame(nil, clientwire.TypePong, 7, nil))
	add(d, "ping", "a PING from the daemon", clientwire.RawFrame(nil, clientwire.TypePing, 9, nil))
	add(c, "pong", "its PONG", clientwire.RawFrame(nil, clientwire.TypePong, 9, nil))

	vs = append(vs, errorVectors(t)...)
	return append(vs, badVectors()...)
}

// errorVectors are an ERROR of every kind of section 7, with its fields.
func errorVectors(t *testing.T) []vector {
	crash := &bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 4243, RequestID: 17, Method: "checksum", ExitCode: -1,
		Signal: syscall.SIGSEGV, CoreDumped: true, Reason: "killed by signal SIGSEGV (core dumped)",
		Stderr: "checksum: bad pointer\n", Limit: bulkhead.LimitNone, Replays: 0}
	since := time.Unix(0, 1767225600000000000)
	es := []struct {
		name, about string
		err         error
		msg         string
	}{
		{"crash", "the worker died of SIGSEGV during the call", crash, ""},
		{"crash.limit", "the pool killed the worker for MaxMemory", &bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 4244,
			RequestID: 18, Method: "load", ExitCode: -1, Signal: syscall.SIGKILL, Killed: true, Reason: "over max_memory",
			Limit: bulkhead.LimitMemory, Replays: 1, AbandonedBy: 12}, ""},
		{"start", "no worker could be started", &bulkhead.StartError{PID: 4245, ExitCode: 78, Exited: true,
			Reason: "exited with status 78 before HELLO", Stderr: "bad environment\n"}, ""},
		{"canceled", "the request's deadline passed while the worker ran it", &bulkhead.CanceledError{Method: "slow",
			RequestID: 19, PID: 4243, Err: context.DeadlineExceeded, Started: true, Reason: "stopped with SIGTERM",
			ExitCode: -1, Signal: syscall.SIGTERM, Stack: "goroutine 1 [running]:\n"}, ""},
		{"canceled.stopping", "the deadline passed during the call; its worker was still being stopped when the daemon answered",
			&bulkhead.CanceledError{Method: "slow", RequestID: 21, PID: 4243, Err: context.DeadlineExceeded,
				Stopped: make(chan struct{})}, ""},
		{"overloaded", "the pool's queue was full", &bulkhead.OverloadedError{Method: "echo", Queued: 1000,
			Waited: 250 * time.Millisecond, Reason: "queue timeout"}, ""},
		{"unhealthy", "the pool fails fast after start-up failures", &bulkhead.UnhealthyError{Method: "echo", Failures: 5,
			Since: since, Reason: "5 workers failed to start", Last: errors.New("exec: no such file")}, ""},
		{"quarantined", "calls with these arguments killed 3 workers", &bulkhead.QuarantinedError{Method: "checksum",
			ArgsHash: 0x9e3779b97f4a7c15, Deaths: 3, Until: since.Add(time.Minute), Reason: "3 workers died",
			Last: errors.New("worker 4243 crashed")}, ""},
		{"remote", "the worker answered ERROR bad_arguments with details", &bulkhead.RemoteError{Code: 3,
			Message: "want 2 arguments, got 1", Details: map[string]any{"want": 2}, Method: "checksum", RequestID: 20, PID: 4243}, ""},
		{"disconnected", "object 1's server crashed; its cause is an error map", &activation.DisconnectedError{Class: "Counter",
			Object: 1, PID: 4242, Err: &bulkhead.CrashError{Phase: bulkhead.PhaseIdle, PID: 4242, ExitCode: 2,
				Reason: "exited with status 2", Limit: bulkhead.LimitNone}}, ""},
		{"closed", "the daemon is closing", bulkhead.ErrClosed, ""},
		{"encoding", "an argument the worker could not encode", fmt.Errorf("%w: result", bulkhead.ErrEncoding), ""},
		{"permission_denied", "a pool or class the peer may not use", clientwire.ErrPermission, ""},
		{"not_found", "a handle the connection does not hold",
			fmt.Errorf("%w: no such handle 99 on this connection", clientwire.ErrNotFound), ""},
		{"bad_request", "an unknown key in a REQUEST", clientwire.ErrBadRequest, `cbor: unknown field "colour"`},
		{"too_many", "max_handles was reached",
			fmt.Errorf("%w: max_handles (65536) references held", clientwire.ErrLimit), ""},
		{"slow_subscriber", "a subscription cut off: the client did not keep up",
			&activation.SlowSubscriberError{Object: 1, Buffer: 16}, ""},
		{"protocol", "a protocol error: the daemon closes the connection", clientwire.ErrProtocol,
			"bulkhead protocol error: non-zero flags (type REQUEST, id 3, length 0)"},
		{"released", "a kind of the activation package's (section 7: any other)", activation.ErrReleased, ""},
		{"internal", "an error of no known kind", errors.New("disk full"), ""},
	}
	var vs []vector
	for i, e := range es {
		id := uint64(30 + i)
		if e.name == "protocol" {
			id = 0
		}
		vs = append(vs, vector{"daemon", "error." + e.name, e.about, errFrame(t, id, e.err, e.msg)})
	}
	return vs
}

// badVectors are frames from a daemon that a client must refuse: it drops
// the connection.
func badVectors() []vector {
	h := func(length uint32, typ, flags, res byte, id uint64) []byte {
		b := make([]byte, wire.HeaderSize)
		b[0], b[1], b[2], b[3] = byte(length), byte(length>>8), byte(length>>16), byte(length>>24)
		b[4], b[5], b[6] = typ, flags, res
		b[8] = byte(id)
		return b
	}
	return []vector{
		{"bad", "flags", "non-zero flags", append(h(1, 3, 1, 0, 1), 0xa0)},
		{"bad", "reserved", "non-zero reserved bytes", append(h(1, 3, 0, 1, 1), 0xa0)},
		{"bad", "type.unknown", "type 9 is no type of the protocol", h(0, 9, 0, 0, 1)},
		{"bad", "type.client", "REQUEST comes from clients only", append(h(1, 2, 0, 0, 1), 0xa0)},
		{"bad", "length", "a length over the daemon's max_frame (16 MiB), no payload follows", h(1<<30, 3, 0, 0, 1)},
		{"bad", "truncated", "a map of one pair that ends after its key", append(h(8, 3, 0, 0, 1), 0xa1, 0x66, 'r', 'e', 's', 'u', 'l', 't')},
		{"bad", "trailing", "two items in one payload", append(h(2, 3, 0, 0, 1), 0xa0, 0xa0)},
		{"bad", "indefinite", "an indefinite-length map", append(h(2, 3, 0, 0, 1), 0xbf, 0xff)},
		{"bad", "tag", "a tagged item (tag 1, a time)", append(h(10, 3, 0, 0, 1), 0xa1, 0x66, 'r', 'e', 's', 'u', 'l', 't', 0xc1, 0x00)},
		{"bad", "duplicate", "a map with a key twice", append(h(7, 3, 0, 0, 1), 0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x01)},
		{"bad", "duplicate.nonshortest", "a map with the key 1 twice, once in a longer form than it needs",
			append(h(6, 3, 0, 0, 1), 0xa2, 0x01, 0xf5, 0x18, 0x01, 0xf6)},
		{"bad", "utf8", "text that is not UTF-8", append(h(4, 4, 0, 0, 1), 0xa1, 0x61, 0xff, 0x00)},
		{"bad", "depth", "33 nested arrays", append(append(h(33, 3, 0, 0, 1), bytes.Repeat([]byte{0x81}, 32)...), 0x80)},
	}
}

// meaning is what vector v says in the file's JSON: the frame's type, id
// and payload, or {"reject": true} for a frame a client refuses.
func meaning(v vector) (string, error) {
	if v.dir == "bad" {
		return `{"reject":true}`, nil
	}
	h, err := wire.ParseHeader(v.frame, wire.DefaultMaxFrame)
	if err != nil {
		return "", err
	}
	p := v.frame[wire.HeaderSize:]
	if int(h.Length) != len(p) {
		return "", fmt.Errorf("length %d, payload %d", h.Length, len(p))
	}
	m := map[string]any{"type": h.Type.String(), "id": h.ID}
	if h.Type == clientwire.TypeEvent {
		m["type"] = "EVENT"
	}
	if h.Type == clientwire.TypeRequest {
		m["type"] = "REQUEST"
	}
	if len(p) > 0 {
		var x any
		if err := clientwire.Decode(p, &x); err != nil {
			return "", err
		}
		m["payload"] = jsonable(x)
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// jsonable is a decoded CBOR value as JSON can say it: a byte string is
// {"$bytes": hex}.
func jsonable(x any) any {
	switch x := x.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[fmt.Sprint(k)] = jsonable(v)
		}
		return m
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
		return x
	case []byte:
		return map[string]any{"$bytes": hex.EncodeToString(x)}
	}
	return x
}

func render(t *testing.T, vs []vector) []byte {
	var b bytes.Buffer
	b.WriteString("# Conformance vectors of docs/CLIENT-PROTOCOL.md (format: README.md in this directory).\n")
	b.WriteString("# Generated from the daemon's encoders by: go test ./internal/clientwire -run TestVectors -update\n")
	for _, v := range vs {
		m, err := meaning(v)
		if err != nil {
			t.Fatalf("%s %s: %v", v.dir, v.name, err)
		}
		fmt.Fprintf(&b, "\n# %s\n%s %s %s %s\n", v.about, v.dir, v.name, hex.EncodeToString(v.frame), m)
	}
	return b.Bytes()
}

// TestVectors is the golden test: the file is what the encoders make now.
func TestVectors(t *testing.T) {
	got := render(t, buildVectors(t))
	if *update {
		if err := os.WriteFile(vectorsFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("%s line %d changed (the encoding changed? rerun with -update if that is meant):\n got %s\nwant %s",
					filepath.Base(vectorsFile), i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s: %d lines, want %d (rerun with -update if the change is meant)", vectorsFile, len(gl), len(wl))
	}
}

// TestVectorsDecode replays the vectors through the Go side's decoders: a
// client's frames decode as the daemon reads them, a daemon's ERROR as the
// Go client's error types, and every bad frame is refused.
func TestVectorsDecode(t *testing.T) {
	kinds := map[string]any{
		"crash": new(*bulkhead.CrashError), "start": new(*bulkhead.StartError), "canceled": new(*bulkhead.CanceledError),
		"overloaded": new(*bulkhead.OverloadedError), "unhealthy": new(*bulkhead.UnhealthyError),
		"quarantined": new(*bulkhead.QuarantinedError), "remote": new(*bulkhead.RemoteError),
		"disconnected": new(*activation.DisconnectedError), "slow_subscriber": new(*activation.SlowSubscriberError),
		"internal": new(*clientwire.Error),
	}
	sentinels := map[string]error{"closed": bulkhead.ErrClosed, "encoding": bulkhead.ErrEncoding,
		"permission_denied": clientwire.ErrPermission, "not_found": clientwire.ErrNotFound,
		"bad_request": clientwire.ErrBadRequest, "too_many": clientwire.ErrLimit, "protocol": clientwire.ErrProtocol,
		"unsupported_version": clientwire.ErrProtocol, "released": activation.ErrReleased}
	for _, v := range buildVectors(t) {
		t.Run(v.dir+"/"+v.name, func(t *testing.T) {
			h, herr := wire.ParseHeader(v.frame, wire.DefaultMaxFrame)
			p := v.frame[wire.HeaderSize:]
			if v.dir == "bad" {
				if herr == nil && clientwire.DaemonType(h.Type) && int(h.Length) == len(p) && wire.CheckValue(p) == nil {
					t.Fatal("accepted")
				}
				return
			}
			if herr != nil {
				t.Fatal(herr)
			}
			switch {
			case v.dir == "client" && h.Type == clientwire.TypeRequest:
				var r clientwire.Request
				if err := clientwire.Decode(p, &r); err != nil {
					t.Fatal(err)
				}
			case h.Type == clientwire.TypeHello:
				var r clientwire.Hello
				if err := clientwire.Decode(p, &r); err != nil {
					t.Fatal(err)
				}
			case h.Type == clientwire.TypeError:
				err := clientwire.DecodeError(p)
				kind := clientwire.KindOf(err)
				if target, ok := kinds[kind]; ok && !errors.As(err, target) {
					t.Fatalf("%s: %T", kind, err)
				}
				if s, ok := sentinels[kind]; ok && !errors.Is(err, s) {
					t.Fatalf("%s: %v is not %v", kind, err, s)
				}
				if kinds[kind] == nil && sentinels[kind] == nil {
					t.Fatalf("kind %q of %T is not checked here", kind, err)
				}
			}
		})
	}
}

// TestDocExample checks that the hex example of CLIENT-PROTOCOL.md section
// 9 is made of vectors, byte for byte.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CLIENT-PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "## 9. Example")
	_, block, ok2 := strings.Cut(sec, "```\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("section 9's code block not found")
	}
	known := make(map[string]bool)
	for _, v := range buildVectors(t) {
		known[hex.EncodeToString(v.frame)] = true
	}
	var frames []string
	for _, line := range strings.Split(block, "\n") {
		fs := strings.Fields(line)
		if len(fs) == 0 || strings.HasPrefix(fs[0], "{") {
			continue
		}
		if fs[0] == "client" || fs[0] == "daemon" {
			frames = append(frames, "")
			fs = fs[2:]
		}
		for _, f := range fs {
			if _, err := hex.DecodeString(f); err != nil {
				t.Fatalf("%q in %q is not hex", f, line)
			}
			frames[len(frames)-1] += f
		}
	}
	if len(frames) != 4 {
		t.Fatalf("%d frames in the example, want 4", len(frames))
	}
	for _, f := range frames {
		if !known[f] {
			t.Errorf("the example's frame %s is no vector", f)
		}
	}
}
