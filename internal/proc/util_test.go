package proc

import (
	"fmt"
	"strings"
)

func fmtSscan(s string, pid *int) (int, error) { return fmt.Sscan(strings.TrimSpace(s), pid) }
