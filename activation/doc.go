// Package activation is COM's out-of-process object model on bulkhead's
// workers: classes served by server programs, objects in them, references,
// lock counts, a running object table and events.
//
// An Activator holds the registry (which program serves which classes,
// ActivatorConfig.Servers) and is the one authority on every server's lock
// count. A Session, one per client, activates objects (CreateInstance,
// GetClassObject) and owns every reference it was handed, so that a client
// that goes away releases them all. A server whose lock count reaches zero
// is suspended at once, so that no activation can reach it, and is sent QUIT
// after ActivatorConfig.Linger; an activation that races its shutdown gets
// "server stopping" and is moved to another server, which the caller never
// sees. A server that dies disconnects its objects, whose calls then fail
// with a *DisconnectedError that wraps the crash.
//
// Calls on objects return the root package's Reply and errors
// (*bulkhead.CrashError, *bulkhead.CanceledError, *bulkhead.RemoteError), so
// that errors.As works the same on a pool's calls and an object's. The wire
// protocol is docs/PROTOCOL.md section 10; the design, with the races it
// closes, is docs/DESIGN.md "Objects and server lifetime".
package activation
