package conform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// checks lists every check, in the order they run.
func (k *kit) checks() []check {
	return []check{
		{"handshake: HELLO, version, cookie, pid", checkHello},
		{"handshake: a refused HELLO exits 78", checkRefused},
		{"environment: no BULKHEAD_FD exits 78", checkNoFD},
		{"environment: BULKHEAD_MAX_FRAME=0 exits 78", envCheck(launch{env: map[string]string{"BULKHEAD_MAX_FRAME": "0"}})},
		{"environment: BULKHEAD_MAX_FRAME=16M exits 78", envCheck(launch{env: map[string]string{"BULKHEAD_MAX_FRAME": "16M"}})},
		{"parent death: a parent already gone, no HELLO", checkParentGone},
		{"PING: PONG with the same id", checkPing},
		{"CALL: an unknown method is ERROR 2", checkUnknown},
		{"values: what section 5 allows is accepted", checkValues},
		{"values: what section 5 forbids is ERROR 3", checkBadValues},
		{"CALL: a malformed envelope is ERROR 3", checkEnvelopes},
		{"CALL: a 1 MiB argument", checkLarge},
		{"framing: a frame that breaks sections 2-3 drops the connection", checkFrames},
		{"limits: a frame at BULKHEAD_MAX_FRAME passes, one byte more drops", checkFrameLimit},
		{"ids: a repeated or smaller CALL id drops the connection", checkIDs},
		{"start marker: each call marked before it runs", checkMarker},
		{"deadline: a call already late is skipped, unmarked", checkDeadlinePassed},
		{"deadline: a running call ends at its deadline", checkDeadlineRunning},
		{"CANCEL: of a call not running, ignored", checkCancelIdle},
		{"CANCEL: of a running call", checkCancelRunning},
		{"pipelining: 32 calls in one write, answered in order", checkPipelined},
		{"batching: PING CALL CANCEL PONG PING CALL QUIT in one write", checkBatch},
		{"QUIT: exits 0", func(k *kit) error { return k.with(launch{}, (*session).quit) }},
		{"QUIT: a call in flight is answered first", checkQuitInFlight},
		{"end of stream: exits 0", checkEOF},
		{"idle timeout: exits 0 on its own", checkIdle},
		{"shared memory: calls over the rings when offered", checkShm},
		{"objects: ACTIVATE of an unknown class is ERROR 9", objectCheck(checkUnknownClass)},
		{"objects: OBJCALL of an unknown object is ERROR 10", objectCheck(checkUnknownObject)},
		{"objects: activate, call, release, and serve on", objectCheck(checkObjectLife)},
		{"objects: a second ACTIVATE of one object id is refused", objectCheck(checkDuplicateObject)},
		{"objects: after SUSPEND, ACTIVATE is ERROR 6", objectCheck(checkSuspend)},
		{"objects: a smaller ACTIVATE id, or RELEASE with a payload, drops the connection", objectCheck(checkObjectFrames)},
	}
}

func checkHello(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		return s.quit()
	})
}

func checkRefused(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		p, err := wire.Marshal(map[string]any{"code": wire.CodeBadHello, "message": "conform: refused on purpose"})
		if err != nil {
			return err
		}
		if err := s.send(wire.TypeError, 0, p); err != nil {
			return err
		}
		if err := s.expectDrop(); err != nil {
			return err
		}
		return s.expectExit(78)
	})
}

// envCheck starts the worker with a bad environment: no HELLO, exit 78.
func envCheck(l launch) func(k *kit) error {
	l.noHello = true
	return func(k *kit) error {
		return k.with(l, func(s *session) error {
			if err := s.expectNoHello(); err != nil {
				return err
			}
			return s.expectExit(78)
		})
	}
}

// checkNoFD: without BULKHEAD_FD a worker refuses to run, unless it is
// also the service (Options.Service), which it would then start.
func checkNoFD(k *kit) error {
	if k.opts.Service {
		return errSkip{"the program is also the service (--service): started plainly, it serves"}
	}
	return envCheck(launch{unset: []string{"BULKHEAD_FD"}})(k)
}

func checkParentGone(k *kit) error {
	l := launch{noHello: true, env: map[string]string{"BULKHEAD_PARENT_PID": "1"}}
	return k.with(l, func(s *session) error {
		if err := s.expectNoHello(); err != nil {
			return err
		}
		ws, err := s.exited()
		if err == nil && ws.Exited() && ws.ExitStatus() == 0 {
			return errors.New("the worker exited 0; a parent already gone is a failure")
		}
		return err
	})
}

func checkPing(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		for _, id := range []uint64{0, 1, 12345, 1<<64 - 1} {
			if err := s.pingPong(id); err != nil {
				return err
			}
		}
		return s.quit()
	})
}

func checkUnknown(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		if len(s.hello.Methods) == 0 {
			return errSkip{"HELLO says the worker serves any method"}
		}
		a, err := s.call(1, callPayload(noSuchMethod, 0))
		if err != nil {
			return err
		}
		if err := wantError(a, wire.CodeUnknownMethod); err != nil {
			return err
		}
		if err := s.wantMarked(1); err != nil {
			return err
		}
		return s.quit()
	})
}

// vectorCalls runs one CALL per vector on one worker; want checks each
// answer. It reports every vector that failed, by name.
func (k *kit) vectorCalls(kind string, payload func(v vector) []byte, want func(s *session, v vector, a answer) error) error {
	return k.with(launch{}, func(s *session) error {
		var bad []string
		for i, v := range k.kind(kind) {
			a, err := s.call(uint64(i+1), payload(v))
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			if err := want(s, v, a); err != nil {
				bad = append(bad, v.name+": "+err.Error())
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%d of %d vectors failed:\n%s", len(bad), len(k.kind(kind)), strings.Join(bad, "\n"))
		}
		return s.quit()
	})
}

func checkValues(k *kit) error {
	return k.vectorCalls("value", func(v vector) []byte { return callPayload(k.probe(), 0, v.bytes) },
		func(s *session, v vector, a answer) error { return k.wantProbe(s, a, v.bytes) })
}

func checkBadValues(k *kit) error {
	return k.vectorCalls("bad", func(v vector) []byte { return callPayload(k.probe(), 0, v.bytes) },
		func(_ *session, _ vector, a answer) error { return wantError(a, wire.CodeBadArguments) })
}

func checkEnvelopes(k *kit) error {
	return k.vectorCalls("envelope", func(v vector) []byte { return v.bytes },
		func(_ *session, _ vector, a answer) error { return wantError(a, wire.CodeBadArguments) })
}

func checkLarge(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		arg := bytesArg(1 << 20)
		a, err := s.call(1, callPayload(k.probe(), 0, arg))
		if err != nil {
			return err
		}
		if err := k.wantProbe(s, a, arg); err != nil {
			return err
		}
		return s.quit()
	})
}

// checkFrames writes each frame vector to a fresh worker; a class server
// is not given those for plain workers only.
func checkFrames(k *kit) error {
	var bad []string
	for _, v := range k.kind("frame") {
		if k.opts.Classes && strings.Contains(v.name, "plain-worker") {
			continue
		}
		err := k.with(launch{}, func(s *session) error {
			if err := s.write(v.bytes); err != nil {
				return err
			}
			return s.expectDrop()
		})
		if err != nil {
			bad = append(bad, v.name+": "+err.Error())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d vectors failed:\n%s", len(bad), len(k.kind("frame")), strings.Join(bad, "\n"))
	}
	return nil
}

func checkFrameLimit(k *kit) error {
	const limit = 1024
	l := launch{env: map[string]string{"BULKHEAD_MAX_FRAME": strconv.Itoa(limit)}}
	return k.with(l, func(s *session) error {
		base := len(callPayload(noSuchMethod, 0, bytesArg(1000)))
		p := callPayload(noSuchMethod, 0, bytesArg(1000+limit-base))
		if len(p) != limit {
			return fmt.Errorf("conform built a %d-byte payload", len(p))
		}
		if _, err := s.call(1, p); err != nil {
			return fmt.Errorf("a CALL of exactly %d bytes: %w", limit, err)
		}
		if err := s.send(wire.TypeCall, 2, append(p, 0)); err != nil {
			return err
		}
		return s.expectDrop()
	})
}

func checkIDs(k *kit) error {
	for _, second := range []uint64{5, 3} {
		err := k.with(launch{}, func(s *session) error {
			if _, err := s.call(5, callPayload(k.probe(), 0, uintArg(1))); err != nil {
				return err
			}
			if err := s.send(wire.TypeCall, second, callPayload(k.probe(), 0, uintArg(1))); err != nil {
				return err
			}
			return s.expectDrop()
		})
		if err != nil {
			return fmt.Errorf("CALL %d after CALL 5: %w", second, err)
		}
	}
	return nil
}

func checkMarker(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		if !s.hello.Marker {
			return errSkip{"HELLO says marker: false"}
		}
		if s.started() != 0 {
			return fmt.Errorf("start marker is %d before any call", s.started())
		}
		for _, id := range []uint64{1, 2, 7, 1000} {
			if _, err := s.call(id, callPayload(k.probe(), 0, uintArg(id))); err != nil {
				return err
			}
			if err := s.wantMarked(id); err != nil {
				return err
			}
		}
		if err := s.pingPong(9); err != nil {
			return err
		}
		if err := s.wantMarked(1000); err != nil {
			return fmt.Errorf("after a PING: %w", err)
		}
		return s.quit()
	})
}

func checkDeadlinePassed(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		if _, err := s.call(1, callPayload(k.probe(), 0, uintArg(1))); err != nil {
			return err
		}
		a, err := s.call(2, callPayload(k.probe(), 1, uintArg(1)))
		if err != nil {
			return err
		}
		if err := wantError(a, wire.CodeCanceled); err != nil {
			return err
		}
		if !a.notStarted() {
			return fmt.Errorf("ERROR canceled without details {started: false}: %+v", a.err.Details)
		}
		if s.hello.Marker && s.started() != 1 {
			return fmt.Errorf("start marker is %d; a call skipped for its deadline must leave it at 1", s.started())
		}
		return s.quit()
	})
}

func checkDeadlineRunning(k *kit) error {
	if k.opts.Sleep == "" {
		return errNoSleep
	}
	return k.with(launch{}, func(s *session) error {
		deadline := time.Now().Add(300 * time.Millisecond)
		a, err := s.call(1, callPayload(k.opts.Sleep, deadline.UnixNano(), uintArg(60_000)))
		if err != nil {
			return err
		}
		if err := wantError(a, wire.CodeCanceled); err != nil {
			return err
		}
		if err := s.wantMarked(1); err != nil {
			return err
		}
		return s.quit()
	})
}

func checkCancelIdle(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		if err := s.send(wire.TypeCancel, 77, nil); err != nil {
			return err
		}
		if _, err := s.call(1, callPayload(k.probe(), 0, uintArg(1))); err != nil {
			return err
		}
		if err := s.send(wire.TypeCancel, 1, nil); err != nil {
			return err
		}
		if err := s.pingPong(2); err != nil {
			return err
		}
		return s.quit()
	})
}

func checkCancelRunning(k *kit) error {
	if k.opts.Sleep == "" {
		return errNoSleep
	}
	return k.with(launch{}, func(s *session) error {
		const ms = 1000
		b := frame(wire.TypeCall, 0, 0, 1, callPayload(k.opts.Sleep, 0, uintArg(ms)))
		b = append(b, frame(wire.TypeCancel, 0, 0, 1, nil)...)
		if err := s.write(b); err != nil {
			return err
		}
		t0 := time.Now()
		a, err := s.recvAnswer(1)
		if err != nil {
			return err
		}
		if a.err == nil && time.Since(t0) >= ms*time.Millisecond {
			return errSkip{"the worker ran the call to its end: CANCEL is best effort"}
		}
		if err := wantError(a, wire.CodeCanceled); err != nil {
			return err
		}
		return s.quit()
	})
}

func checkPipelined(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		const n = 32
		var b []byte
		for id := uint64(1); id <= n; id++ {
			b = append(b, frame(wire.TypeCall, 0, 0, id, callPayload(k.probe(), 0, uintArg(id)))...)
		}
		if err := s.write(b); err != nil {
			return err
		}
		for id := uint64(1); id <= n; id++ {
			a, err := s.recvAnswer(id)
			if err != nil {
				return err
			}
			if err := k.wantProbe(s, a, uintArg(id)); err != nil {
				return fmt.Errorf("call %d: %w", id, err)
			}
		}
		if err := s.wantMarked(n); err != nil {
			return err
		}
		return s.quit()
	})
}

func checkBatch(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		var b []byte
		b = append(b, frame(wire.TypePing, 0, 0, 1, nil)...)
		b = append(b, frame(wire.TypeCall, 0, 0, 2, callPayload(k.probe(), 0, uintArg(2)))...)
		b = append(b, frame(wire.TypeCancel, 0, 0, 2, nil)...)
		b = append(b, frame(wire.TypePong, 0, 0, 7, nil)...)
		b = append(b, frame(wire.TypePing, 0, 0, 3, nil)...)
		b = append(b, frame(wire.TypeCall, 0, 0, 4, callPayload(k.probe(), 0, uintArg(4)))...)
		b = append(b, frame(wire.TypeQuit, 0, 0, 0, nil)...)
		if err := s.write(b); err != nil {
			return err
		}
		// A worker that runs calls on other threads may answer a PING
		// before a call that came first: any order, each once.
		seen := map[uint64]bool{}
		for range 4 {
			if err := s.batchAnswer(k, seen); err != nil {
				return err
			}
		}
		if err := s.expectDrop(); err != nil {
			return fmt.Errorf("after QUIT: %w", err)
		}
		return s.expectExit(0)
	})
}

// batchAnswer reads one answer of checkBatch: PONG 1 or 3, or the answer to
// call 2 or 4. The call that CANCEL follows may be answered, or cancelled.
func (s *session) batchAnswer(k *kit, seen map[uint64]bool) error {
	h, p, err := s.recv()
	if err != nil {
		return fmt.Errorf("waiting for the batch's answers: %w", err)
	}
	want := map[uint64]wire.Type{1: wire.TypePong, 3: wire.TypePong, 2: wire.TypeReply, 4: wire.TypeReply}
	t, ok := want[h.ID]
	if !ok || seen[h.ID] || (h.Type != t && !(t == wire.TypeReply && h.Type == wire.TypeError)) {
		return fmt.Errorf("%v with id %d: not an answer the batch expects, or a second one", h.Type, h.ID)
	}
	seen[h.ID] = true
	if h.Type == wire.TypePong {
		return nil
	}
	if err := wire.CheckValue(p); err != nil {
		return err
	}
	a := answer{reply: p}
	if h.Type == wire.TypeError {
		e, err := wire.DecodeError(p)
		if err != nil {
			return err
		}
		a = answer{err: &e}
	}
	if h.ID == 2 && a.err != nil && a.err.Code == wire.CodeCanceled {
		return nil
	}
	return k.wantProbe(s, a, uintArg(h.ID))
}

func checkQuitInFlight(k *kit) error {
	if k.opts.Sleep == "" {
		return errNoSleep
	}
	return k.with(launch{}, func(s *session) error {
		b := frame(wire.TypeCall, 0, 0, 1, callPayload(k.opts.Sleep, 0, uintArg(200)))
		b = append(b, frame(wire.TypeQuit, 0, 0, 0, nil)...)
		if err := s.write(b); err != nil {
			return err
		}
		a, err := s.recvAnswer(1)
		if err != nil {
			return err
		}
		if a.err != nil {
			return fmt.Errorf("the call in flight got %v, want its REPLY", a)
		}
		if err := s.expectDrop(); err != nil {
			return err
		}
		return s.expectExit(0)
	})
}

func checkEOF(k *kit) error {
	return k.with(launch{}, func(s *session) error {
		s.conn.Close()
		return s.expectExit(0)
	})
}

func checkIdle(k *kit) error {
	if k.opts.Classes {
		return errSkip{"a class server's lifetime is the activator's (its lock count), not an idle timeout"}
	}
	l := launch{env: map[string]string{"BULKHEAD_IDLE_TIMEOUT_MS": "100"}}
	return k.with(l, func(s *session) error {
		if _, err := s.call(1, callPayload(k.probe(), 0, uintArg(1))); err != nil {
			return err
		}
		if err := s.expectDrop(); err != nil {
			return err
		}
		return s.expectExit(0)
	})
}

func checkShm(k *kit) error {
	return k.with(launch{shm: true}, func(s *session) error {
		if s.hello.Transport != "shm" {
			return errSkip{"the worker did not take the shared-memory transport it was offered"}
		}
		if err := s.pingPong(1); err != nil {
			return err
		}
		for i, n := range []int{10, 10 << 10, 1 << 20} { // the ring is 4 KiB
			id, arg := uint64(i+2), bytesArg(n)
			a, err := s.call(id, callPayload(k.probe(), 0, arg))
			if err != nil {
				return err
			}
			if err := k.wantProbe(s, a, arg); err != nil {
				return err
			}
		}
		return s.quit()
	})
}
