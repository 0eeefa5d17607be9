package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestJSONArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []any
		err  string
	}{
		{`["gzopen", "/dev/null", "rb"]`, []any{"gzopen", "/dev/null", "rb"}, ""},
		{`[1, -2, 2.5, true, null]`, []any{int64(1), int64(-2), 2.5, true, nil}, ""},
		{`["xmlReadMemory", {"base64": "PGEvPg=="}, 0]`, []any{"xmlReadMemory", []byte("<a/>"), int64(0)}, ""},
		{`[18446744073709551615]`, []any{1.8446744073709552e19}, ""},
		{`[]`, []any{}, ""},
		{`[1`, nil, "want a JSON array"},
		{`{"a": 1}`, nil, "want a JSON array"},
		{`[1] [2]`, nil, "got more after it"},
		{`[{"b": 1}]`, nil, `an object must be {"base64"`},
		{`[{"base64": "!!"}]`, nil, "argument 0: illegal base64"},
		{`[{"base64": "AA==", "x": 1}]`, nil, `an object must be {"base64"`},
	}
	for _, tt := range tests {
		got, err := jsonArgs(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("jsonArgs(%s) = %v, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
		case err != nil || !reflect.DeepEqual(got, tt.want):
			t.Errorf("jsonArgs(%s) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}
