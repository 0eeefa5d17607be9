package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	const obj = `{"lost": 0, "crashed": 12, "clean": true, "worker_deaths": {"call": 3}, "name": "x"}`
	tests := []struct {
		name  string
		args  []string
		input string
		code  int
		want  string
	}{
		{"all hold", []string{"lost==0", "crashed>0", "crashed >= 12", "clean==true", "worker_deaths.call<4", "lost!=1"}, obj, 0, "ok   crashed>0 (12)"},
		{"one fails", []string{"lost==0", "crashed>12"}, obj, 1, "FAIL crashed>12 (got 12)"},
		{"missing key", []string{"duplicated==0"}, obj, 1, "no such key"},
		{"not a number", []string{"name==0"}, obj, 1, "not a number"},
		{"not an object", []string{"lost.x==0"}, obj, 1, "not an object"},
		{"boolean false", []string{"clean==false"}, obj, 1, "FAIL clean==false"},
		{"no conditions", nil, obj, 2, "usage"},
		{"no operator", []string{"lost"}, obj, 2, "no operator"},
		{"bad value", []string{"lost==none"}, obj, 2, "not a number"},
		{"ordered boolean", []string{"clean>true"}, obj, 2, "on a boolean"},
		{"empty key", []string{"a..b==1"}, obj, 2, "empty key"},
		{"not JSON", []string{"lost==0"}, "lost: 0", 2, "not one JSON object"},
		{"array", []string{"lost==0"}, "[1]", 2, "not one JSON object"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, strings.NewReader(tt.input), &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Errorf("%s: exit %d, output %q %q; want exit %d and %q", tt.name, code, out.String(), errb.String(), tt.code, tt.want)
		}
	}
}

func TestInputBound(t *testing.T) {
	big := `{"lost": 0, "pad": "` + strings.Repeat("x", maxInput) + `"}`
	var out, errb bytes.Buffer
	if code := run([]string{"lost==0"}, strings.NewReader(big), &out, &errb); code != 2 {
		t.Fatalf("oversized input: exit %d, %q", code, errb.String())
	}
}
