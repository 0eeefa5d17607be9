package sandbox

import "strings"

// protocolVars are the variables the dispatcher sets for each worker
// (docs/PROTOCOL.md): a dispatcher that is itself a worker must not pass
// its own on.
var protocolVars = []string{
	"BULKHEAD_PROTOCOL=", "BULKHEAD_FD=", "BULKHEAD_MARKER_FD=", "BULKHEAD_COOKIE=", "BULKHEAD_PARENT_PID=",
	"BULKHEAD_MAX_FRAME=", "BULKHEAD_SHM_", "BULKHEAD_IDLE_TIMEOUT_MS=", "BULKHEAD_EXTRA_FD=", "BULKHEAD_SANDBOX_",
}

// Environ is a worker's base environment: from the dispatcher's own
// environment (environ, as os.Environ returns it) only PATH and the
// BULKHEAD_* variables (less the protocol's own, which the dispatcher sets
// afresh), then env, whose entries override them. A service's secrets
// (tokens, keys, database URLs in its environment) are not handed to
// native code that may be compromised by its input.
func Environ(environ, env []string) []string {
	out := make([]string, 0, 8+len(env))
	for _, kv := range environ {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "BULKHEAD_") && !isProtocolVar(kv) {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

func isProtocolVar(kv string) bool {
	for _, p := range protocolVars {
		if strings.HasPrefix(kv, p) {
			return true
		}
	}
	return false
}
