package chaos

import (
	"errors"
	"reflect"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// SoftCancelField is the bulkhead.Config field of the soft cancel being
// added (a grace in which a worker may finish a call whose ctx ended, before
// it is stopped). The soak sets it by name, so that it builds with or
// without it.
const SoftCancelField = "CancelGrace"

// ErrNoSoftCancel is returned for Options.SoftCancel by a build whose
// bulkhead.Config has no SoftCancelField.
var ErrNoSoftCancel = errors.New("this build's bulkhead.Config has no " + SoftCancelField + " field (soft cancel)")

// SoftCancelSupported reports whether this build's bulkhead.Config has the
// soft-cancel field.
func SoftCancelSupported() bool {
	return softCancelValue(&bulkhead.Config{}).IsValid()
}

func softCancelValue(cfg *bulkhead.Config) reflect.Value {
	f := reflect.ValueOf(cfg).Elem().FieldByName(SoftCancelField)
	if !f.IsValid() || f.Type() != reflect.TypeFor[time.Duration]() || !f.CanSet() {
		return reflect.Value{}
	}
	return f
}

func setSoftCancel(cfg *bulkhead.Config, d time.Duration) error {
	f := softCancelValue(cfg)
	if !f.IsValid() {
		return ErrNoSoftCancel
	}
	f.SetInt(int64(d))
	return nil
}
