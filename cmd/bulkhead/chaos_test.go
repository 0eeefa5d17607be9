package main

import (
	"strings"
	"testing"
)

func TestChaosBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--calls", "0"}, "--calls 0"},
		{[]string{"--transport", "pipe"}, `--transport "pipe": want socket or shm`},
		{[]string{"--ring-faults"}, "--ring-faults needs --transport shm"},
		{[]string{"--deadline-min", "1ms"}, "--deadline-min needs --deadline-race"},
		{[]string{"--race-work", "1ms"}, "--race-work needs --deadline-race"},
		{[]string{"--deadline-race", "--deadline-min", "0s"}, "--deadline-min 0s: must be positive"},
		{[]string{"--deadline-race", "--deadline-min", "3ms", "--deadline-max", "2ms"}, "--deadline-max 2ms: want --deadline-min (3ms)"},
		{[]string{"--deadline-race", "--race-work", "2s"}, "--race-work 2s"},
		{[]string{"--segment-calls", "-1"}, "--segment-calls -1"},
		{[]string{"--isolate=false", "--segment-calls", "10"}, "--segment-calls needs --isolate"},
		{[]string{"--spares", "65"}, "--spares 65"},
		{[]string{"--soft-cancel", "-1ms"}, "--soft-cancel -1ms"},
		{[]string{"--fault-rate", "2"}, "--fault-rate 2"},
	}
	for _, tt := range tests {
		code, _, errs := run(t, append([]string{"chaos"}, tt.args...)...)
		if code != 2 || !strings.Contains(errs, tt.want) {
			t.Errorf("chaos %q: exit %d, stderr %q; want exit 2 and %q", tt.args, code, errs, tt.want)
		}
	}
}
