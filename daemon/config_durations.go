package daemon

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/BurntSushi/toml"
)

// errBareDuration is a duration key given a number: the toml package
// would take it as nanoseconds, so "heartbeat = 5" would be 5ns.
var errBareDuration = errors.New(`a duration is a string such as "100ms"`)

var durationType = reflect.TypeOf(time.Duration(0))

// checkDurations refuses every duration key of a File given a number
// rather than a string, each with its file, line and key: data is decoded
// a second time, generically, and walked along File's type.
func checkDurations(path string, data []byte) error {
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		return decodeError(path, err)
	}
	var errs []error
	walkDurations(reflect.TypeOf(File{}), m, nil, -1, func(key []string, nth int, v any) {
		errs = append(errs, &ConfigError{File: path, Line: keyLineN(data, toml.Key(key), nth),
			Key: toml.Key(key).String(), Err: fmt.Errorf("%w, not %v (that would be %vns)", errBareDuration, v, v)})
	})
	return errors.Join(errs...)
}

// walkDurations calls bad for each key of m, a table decoded into struct
// type t, that is a time.Duration there but not a string in m. nth is
// the index of the [[pool]] or [[server]] the table is in, -1 for none.
func walkDurations(t reflect.Type, m map[string]any, key []string, nth int, bad func([]string, int, any)) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			walkDurations(f.Type, m, key, nth, bad)
			continue
		}
		name := f.Tag.Get("toml")
		v, ok := m[name]
		if !ok || name == "" {
			continue
		}
		k := append(key[:len(key):len(key)], name)
		switch ft := f.Type; {
		case ft == durationType:
			if _, isString := v.(string); !isString {
				bad(k, nth, v)
			}
		case ft.Kind() == reflect.Struct:
			if sub, ok := v.(map[string]any); ok {
				walkDurations(ft, sub, k, nth, bad)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			tables, _ := v.([]map[string]any)
			for j, sub := range tables {
				if nth < 0 {
					walkDurations(ft.Elem(), sub, k, j, bad)
				} else {
					walkDurations(ft.Elem(), sub, k, nth, bad) // [[server.class]] within its [[server]]
				}
			}
		}
	}
}
