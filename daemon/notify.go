package daemon

import (
	"log/slog"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells systemd (Type=notify) where the daemon is: READY,
// RELOADING, STOPPING, and a watchdog ping when the unit asks for one. Each
// does nothing when the daemon was not started by systemd.
type Notifier struct {
	log  *slog.Logger
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewNotifier starts the watchdog if systemd asks for one (WATCHDOG_USEC):
// a ping at half its interval, until Stopping.
func NewNotifier(log *slog.Logger) *Notifier {
	n := &Notifier{log: log, stop: make(chan struct{})}
	if every, err := sd.SdWatchdogEnabled(false); err == nil && every > 0 {
		n.wg.Add(1)
		go n.watchdog(every / 2)
	}
	return n
}

func (n *Notifier) watchdog(every time.Duration) {
	defer n.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.send(sd.SdNotifyWatchdog)
		case <-n.stop:
			return
		}
	}
}

func (n *Notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify", "state", state, "err", err)
	}
}

// Ready says the daemon serves.
func (n *Notifier) Ready() { n.send(sd.SdNotifyReady) }

// Reloading says a reload has begun; Ready ends it.
func (n *Notifier) Reloading() { n.send(sd.SdNotifyReloading) }

// Stopping says the daemon drains, and stops the watchdog.
func (n *Notifier) Stopping() {
	n.send(sd.SdNotifyStopping)
	n.once.Do(func() { close(n.stop) })
	n.wg.Wait()
}
