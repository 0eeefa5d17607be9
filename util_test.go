package bulkhead_test

import (
	"runtime"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

func wireMarshal(v any) ([]byte, error) { return wire.Marshal(v) }

func runtimeGosched() { runtime.Gosched() }
