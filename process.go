package bulkhead

import "time"

// Process is how to start a program that speaks the protocol: what a
// pool's workers (Config, whose fields of the same names mean the same)
// and an activator's class servers (activation.ServerConfig) have in common. Every field's
// zero value is usable, except Command.
type Process struct {
	// Command is the program: a path, or a name looked up in PATH.
	// Required.
	Command string

	// Args are its arguments, not including the program name.
	// Zero value: none.
	Args []string

	// Env is added to its environment, as "KEY=value" strings (Config.Env).
	// Zero value: PATH and the BULKHEAD_* variables only.
	Env []string

	// Dir is its working directory.
	// Zero value: the dispatcher's.
	Dir string

	// Limits are resource limits set on it at spawn.
	// Zero value: the dispatcher's own limits are inherited.
	Limits Limits

	// StartTimeout bounds the time from spawn to HELLO.
	// Zero value: 10 seconds.
	StartTimeout time.Duration

	// StderrTail is how many bytes of its stderr (and stdout) are kept
	// for crash reports: the first half and the last (Config.StderrTail).
	// Zero value: 4 KiB. At most 1 MiB.
	StderrTail int

	// Sandbox is what it is kept from doing (Config.Sandbox).
	// Zero value: no protection beyond the minimal environment.
	Sandbox Sandbox
}
