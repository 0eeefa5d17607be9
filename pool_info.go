package bulkhead

import "time"

// WorkerInfo describes one running worker.
type WorkerInfo struct {
	PID      int
	Name     string    // from its HELLO
	InFlight int       // calls it holds, those queued in its socket (Config.Pipeline) included
	Capacity int       // calls it runs at once
	Since    time.Time // when it said HELLO
	// Transport is the transport its frames use: TransportShm only if
	// Config asked for it and the worker accepted it in HELLO.
	Transport Transport
	// Spare is true for a warm spare (Config.Spares): started and
	// handshaken, taking no calls until it is promoted.
	Spare bool
	// Stopping is true for a worker taken out of service (recycled, lost,
	// or stopped for a hung call) that has not exited yet: it takes no new
	// calls.
	Stopping bool
}

// Workers lists the running workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		if w.Exited.Load() {
			continue // dead, not yet reaped
		}
		out = append(out, WorkerInfo{PID: w.PID, Name: w.Hello.Name, InFlight: w.inflight, Capacity: w.capacity, Since: w.born,
			Transport: w.transport(), Spare: w.state == spare, Stopping: w.state == retiring || w.state == lost})
	}
	return out
}
