package cluster

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/nats-io/nats.go"
)

// FuzzDecodeLoad: anyone may publish on a load subject; a heartbeat is
// decoded strictly and bounded, never trusted.
func FuzzDecodeLoad(f *testing.F) {
	ok, _ := wire.Marshal(load{Node: "a", Free: 2, Workers: 3})
	f.Add(ok)
	f.Add([]byte("\xa4dnodedfakedfree\x19\x03\xe8gworkers\x19\x03\xe8hdraining\xf4"))
	f.Add([]byte{0xa1, 0x64, 'n', 'o', 'd', 'e', 0x60})
	f.Fuzz(func(t *testing.T, p []byte) {
		l, err := decodeLoad(p)
		if err != nil {
			return
		}
		if checkName("node", l.Node) != nil || l.Workers < 0 || l.Workers > 1<<20 || l.Free > 1<<20 {
			t.Fatalf("accepted %+v", l)
		}
	})
}

// FuzzDecodeAnswer: a node's answer is checked before it is handed on.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add(statusResult, []byte{0xf6})
	f.Add(statusError, []byte("\xa2dkindfclosedgmessagea."))
	f.Add("other", []byte{})
	f.Fuzz(func(t *testing.T, status string, p []byte) {
		m := &nats.Msg{Data: p, Header: nats.Header{HeaderStatus: {status}}}
		r, err := decodeAnswer(m)
		if err == nil && wire.CheckValue(r.Raw()) != nil {
			t.Fatalf("accepted a result that breaks the value rules: %x", p)
		}
	})
}

// FuzzDecodeReply: a node's answer to an object op is decoded strictly.
func FuzzDecodeReply(f *testing.F) {
	ok, _ := wire.Marshal(clientwire.Reply{Object: 3, PID: 42})
	f.Add(statusResult, ok)
	f.Add(statusError, []byte("\xa2dkindlnot_foundgmessagea."))
	f.Add(statusResult, []byte("\xa1dnope\x01"))
	f.Fuzz(func(t *testing.T, status string, p []byte) {
		m := &nats.Msg{Data: p, Header: nats.Header{HeaderStatus: {status}}}
		rep, err := decodeReply(m)
		if err == nil && status != statusResult {
			t.Fatalf("accepted status %q: %+v", status, rep)
		}
	})
}

// FuzzDecodeEvent: an event is [name, args], or dropped.
func FuzzDecodeEvent(f *testing.F) {
	ok, _ := wire.Marshal([]any{"changed", []any{int64(1)}})
	f.Add(ok)
	f.Add([]byte{0x82, 0x60, 0x80})
	f.Add([]byte{0x81, 0x60})
	f.Fuzz(func(t *testing.T, p []byte) {
		ev, ok := decodeEvent(p)
		if !ok {
			return
		}
		for i := range ev.Len() {
			var v any
			_ = ev.Decode(i, &v)
		}
		if ev.Decode(ev.Len(), new(any)) == nil {
			t.Fatal("decoded an argument past the end")
		}
	})
}

// FuzzHeaders: the numbers in an events message's HeaderSeq and an
// object request's HeaderEpoch are anyone's: parsed strictly, as
// "<digits>.<digits>" and "<digits>" of 64-bit numbers, and nothing else.
func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"1.2", "0.0", "18446744073709551615.1", "18446744073709551616.1", "1..2", ".", "1.", "x.1", "-1.2", "+1.2", "1.2.3", "", "007"} {
		f.Add(s)
	}
	seqRE := regexp.MustCompile(`^([0-9]+)\.([0-9]+)$`)
	f.Fuzz(func(t *testing.T, v string) {
		gen, seq, ok := parseSeq(nats.Header{HeaderSeq: {v}})
		want := false
		if m := seqRE.FindStringSubmatch(v); m != nil {
			g, err1 := strconv.ParseUint(m[1], 10, 64)
			s, err2 := strconv.ParseUint(m[2], 10, 64)
			want = err1 == nil && err2 == nil && len(v) <= 41
			if want && (g != gen || s != seq) {
				t.Fatalf("%q parsed as %d.%d", v, gen, seq)
			}
		}
		if ok != want {
			t.Fatalf("%q: parsed %v, want %v", v, ok, want)
		}
		e, err := parseEpoch(nats.Header{HeaderEpoch: {v}})
		if want, werr := strconv.ParseUint(v, 10, 64); v != "" && ((err == nil) != (werr == nil) || err == nil && e != want) {
			t.Fatalf("epoch %q: %d, %v", v, e, err)
		}
	})
}
