package native

import "fmt"

// Fault names a way a native call can fail.
type Fault string

// The faults. The names are the strings that ParseFault accepts.
const (
	FaultNone  Fault = ""
	FaultSegv  Fault = "segv"
	FaultAbort Fault = "abort"
	FaultExit  Fault = "exit"
	FaultHang  Fault = "hang"
)

// FaultExitCode is the status with which FaultExit.Trigger exits.
const FaultExitCode = 3

// ParseFault returns the Fault named s. "" and "none" name FaultNone.
func ParseFault(s string) (Fault, error) {
	switch f := Fault(s); f {
	case FaultNone, FaultSegv, FaultAbort, FaultExit, FaultHang:
		return f, nil
	case "none":
		return FaultNone, nil
	}
	return FaultNone, fmt.Errorf("native: unknown fault %q (want none, segv, abort, exit or hang)", s)
}

// String returns the fault's name, "none" for FaultNone.
func (f Fault) String() string {
	if f == FaultNone {
		return "none"
	}
	return string(f)
}

// Trigger performs the fault in native code. It returns only for FaultNone:
// FaultSegv and FaultAbort kill the process by SIGSEGV and SIGABRT, FaultExit
// exits with FaultExitCode, and FaultHang spins forever. It panics on a Fault
// that ParseFault would reject.
func (f Fault) Trigger() {
	switch f {
	case FaultNone:
	case FaultSegv:
		Segv()
	case FaultAbort:
		Abort()
	case FaultExit:
		Exit(FaultExitCode)
	case FaultHang:
		Hang()
	default:
		panic(fmt.Sprintf("native: unknown fault %q", string(f)))
	}
}
