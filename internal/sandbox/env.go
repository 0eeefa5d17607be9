package sandbox

import "strings"

// Environ is a worker's base environment: from the dispatcher's own
// environment (environ, as os.Environ returns it) only PATH and the
// BULKHEAD_* variables, then env, whose entries override them. A service's
// secrets (tokens, keys, database URLs in its environment) are not handed
// to native code that may be compromised by its input.
func Environ(environ, env []string) []string {
	out := make([]string, 0, 8+len(env))
	for _, kv := range environ {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "BULKHEAD_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}
