package bulkhead

import "time"

// Clock is the activator's source of time, for leases and linger. Tests
// inject a fake one to expire a lease without waiting for it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine after d, unless stopped.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call; it reports false if the call has already
	// started or the timer was stopped.
	Stop() bool
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// ownedTimer is a timer whose callback's goroutine belongs to the activator:
// the activator's WaitGroup counts it from arming until it has run or been
// stopped.
type ownedTimer struct {
	t    Timer
	done func()
}

func (t *ownedTimer) Stop() bool {
	if t == nil {
		return false
	}
	if t.t.Stop() {
		t.done()
		return true
	}
	return false
}
