// Package csdk holds the C SDK, bulkhead.h, for Go programs that build C
// workers at run time (package surrogate, and the clients `bulkhead gen`
// writes). C programs include sdk/c/bulkhead.h directly.
package csdk

import _ "embed"

// Header is the text of bulkhead.h.
//
//go:embed bulkhead.h
var Header string
