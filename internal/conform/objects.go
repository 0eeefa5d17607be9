package conform

import (
	"fmt"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// objectCheck runs fn on a fresh class server, or skips for a plain worker.
func objectCheck(fn func(k *kit, s *session) error) func(k *kit) error {
	return func(k *kit) error {
		if !k.opts.Classes {
			return errSkip{"not a class server (give --classes)"}
		}
		return k.with(launch{}, func(s *session) error { return fn(k, s) })
	}
}

// activate sends ACTIVATE of object of class, with Options.ActivateArgs, as
// call id.
func (s *session) activate(id uint64, class string, object uint64) (answer, error) {
	var b wire.Builder
	if err := b.Activate(id, class, object, s.k.opts.ActivateArgs, wire.DefaultMaxFrame); err != nil {
		return answer{}, err
	}
	if err := s.write(b.Bytes()); err != nil {
		return answer{}, err
	}
	return s.recvAnswer(id)
}

// objCall sends OBJCALL of method on object as call id.
func (s *session) objCall(id, object uint64, method string) (answer, error) {
	var b wire.Builder
	if err := b.ObjCall(id, object, method, 0, nil, wire.DefaultMaxFrame); err != nil {
		return answer{}, err
	}
	if err := s.write(b.Bytes()); err != nil {
		return answer{}, err
	}
	return s.recvAnswer(id)
}

// live activates object 1 of the first class; a class whose constructor
// refuses no arguments cannot be taken further.
func (s *session) live(id uint64) error {
	a, err := s.activate(id, s.classes[0].Class, 1)
	if err != nil {
		return err
	}
	if a.err != nil {
		return errSkip{fmt.Sprintf("class %s refuses an ACTIVATE with arguments %v (set them with --activate-args): %v",
			s.classes[0].Class, s.k.opts.ActivateArgs, a)}
	}
	if string(a.reply) != "\xf6" {
		return fmt.Errorf("ACTIVATE answered %v, want REPLY null", a)
	}
	return s.wantMarked(id)
}

func checkUnknownClass(_ *kit, s *session) error {
	a, err := s.activate(1, "bulkhead.conform.NoSuchClass", 1)
	if err != nil {
		return err
	}
	if err := wantError(a, wire.CodeUnknownClass); err != nil {
		return err
	}
	return s.quit()
}

func checkUnknownObject(_ *kit, s *session) error {
	a, err := s.objCall(1, 77, "m")
	if err != nil {
		return err
	}
	if err := wantError(a, wire.CodeUnknownObject); err != nil {
		return err
	}
	return s.quit()
}

func checkObjectLife(_ *kit, s *session) error {
	if err := s.live(1); err != nil {
		return err
	}
	a, err := s.objCall(2, 1, noSuchMethod)
	if err != nil {
		return err
	}
	if err := wantError(a, wire.CodeUnknownMethod); err != nil {
		return err
	}
	if err := s.wantMarked(2); err != nil {
		return err
	}
	if err := s.send(wire.TypeRelease, 1, nil); err != nil {
		return err
	}
	if err := s.pingPong(3); err != nil {
		return fmt.Errorf("after RELEASE: %w", err)
	}
	if a, err = s.objCall(4, 1, noSuchMethod); err != nil {
		return err
	}
	if err := wantError(a, wire.CodeUnknownObject); err != nil {
		return fmt.Errorf("a call on a released object: %w", err)
	}
	return s.quit()
}

func checkDuplicateObject(_ *kit, s *session) error {
	if err := s.live(1); err != nil {
		return err
	}
	a, err := s.activate(2, s.classes[0].Class, 1)
	if err != nil {
		return err
	}
	if a.err == nil {
		return fmt.Errorf("a second ACTIVATE of object 1 got %v, want an ERROR", a)
	}
	return s.quit()
}

func checkSuspend(_ *kit, s *session) error {
	if err := s.send(wire.TypeSuspend, 0, nil); err != nil {
		return err
	}
	a, err := s.activate(1, s.classes[0].Class, 1)
	if err != nil {
		return err
	}
	if err := wantError(a, wire.CodeServerStopping); err != nil {
		return err
	}
	return s.quit()
}

func checkObjectFrames(k *kit, _ *session) error {
	for _, tt := range []struct {
		name  string
		frame func(s *session) error
	}{
		{"ACTIVATE id 1 after call 5", func(s *session) error {
			if _, err := s.call(5, callPayload(noSuchMethod, 0)); err != nil {
				return err
			}
			var b wire.Builder
			if err := b.Activate(1, s.classes[0].Class, 9, nil, wire.DefaultMaxFrame); err != nil {
				return err
			}
			return s.write(b.Bytes())
		}},
		{"RELEASE with a payload", func(s *session) error { return s.write(frame(wire.TypeRelease, 0, 0, 1, []byte{0xf6})) }},
		{"SUSPEND with a payload", func(s *session) error { return s.write(frame(wire.TypeSuspend, 0, 0, 0, []byte{0xf6})) }},
	} {
		err := k.with(launch{}, func(s *session) error {
			if err := tt.frame(s); err != nil {
				return err
			}
			return s.expectDrop()
		})
		if err != nil {
			return fmt.Errorf("%s: %w", tt.name, err)
		}
	}
	return nil
}
