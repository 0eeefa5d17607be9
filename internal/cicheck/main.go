// Command cicheck checks a JSON object read from stdin against conditions,
// so that .ci/run can verify a command's --json output with nothing but Go:
//
//	go run ./cmd/bulkhead demo --json | go run ./internal/cicheck 'lost==0' 'crashed>0'
//
// A condition is KEY OP VALUE: KEY a top-level key, or a dotted path into
// nested objects ("worker_deaths.call"); OP one of == != >= <= > <; VALUE a
// number, true or false. It prints one line per condition and exits 0 if all
// hold, 1 if one does not, 2 on a bad condition or input.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// maxInput bounds the JSON read from stdin.
const maxInput = 16 << 20

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: cicheck 'KEY OP VALUE'... < object.json")
		return 2
	}
	conds := make([]cond, 0, len(args))
	for _, a := range args {
		c, err := parseCond(a)
		if err != nil {
			fmt.Fprintln(stderr, "cicheck:", err)
			return 2
		}
		conds = append(conds, c)
	}
	b, err := io.ReadAll(io.LimitReader(stdin, maxInput+1))
	if err != nil || len(b) > maxInput {
		fmt.Fprintf(stderr, "cicheck: reading stdin: %v (limit %d bytes)\n", err, maxInput)
		return 2
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		fmt.Fprintf(stderr, "cicheck: stdin is not one JSON object: %v\n", err)
		return 2
	}
	failed := 0
	for _, c := range conds {
		ok, got, err := c.eval(obj)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "FAIL %s: %v\n", c.src, err)
			failed++
		case ok:
			fmt.Fprintf(stdout, "ok   %s (%v)\n", c.src, got)
		default:
			fmt.Fprintf(stdout, "FAIL %s (got %v)\n", c.src, got)
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "cicheck: %d of %d conditions failed\n", failed, len(conds))
		return 1
	}
	return 0
}

type cond struct {
	src  string
	path []string
	op   string
	num  float64
	bool *bool // set when VALUE is true or false
}

var ops = []string{"==", "!=", ">=", "<=", ">", "<"} // two-character operators first

func parseCond(s string) (cond, error) {
	for _, op := range ops {
		i := strings.Index(s, op)
		if i < 0 {
			continue
		}
		key, val := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+len(op):])
		c := cond{src: s, op: op, path: strings.Split(key, ".")}
		for _, p := range c.path {
			if p == "" {
				return c, fmt.Errorf("condition %q: empty key", s)
			}
		}
		switch val {
		case "true", "false":
			b := val == "true"
			c.bool = &b
			if op != "==" && op != "!=" {
				return c, fmt.Errorf("condition %q: %s on a boolean", s, op)
			}
		default:
			n, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return c, fmt.Errorf("condition %q: value %q is not a number, true or false", s, val)
			}
			c.num = n
		}
		return c, nil
	}
	return cond{}, fmt.Errorf("condition %q: no operator (want one of %s)", s, strings.Join(ops, " "))
}

func (c cond) eval(obj map[string]any) (ok bool, got any, err error) {
	var v any = obj
	for _, p := range c.path {
		m, isObj := v.(map[string]any)
		if !isObj {
			return false, nil, fmt.Errorf("%q is not an object", p)
		}
		if v, isObj = m[p]; !isObj {
			return false, nil, errors.New("no such key")
		}
	}
	if c.bool != nil {
		b, isBool := v.(bool)
		if !isBool {
			return false, v, fmt.Errorf("%v is not a boolean", v)
		}
		return (b == *c.bool) == (c.op == "=="), b, nil
	}
	n, isNum := v.(float64)
	if !isNum {
		return false, v, fmt.Errorf("%v is not a number", v)
	}
	switch c.op {
	case "==":
		ok = n == c.num
	case "!=":
		ok = n != c.num
	case ">=":
		ok = n >= c.num
	case "<=":
		ok = n <= c.num
	case ">":
		ok = n > c.num
	case "<":
		ok = n < c.num
	}
	return ok, n, nil
}
