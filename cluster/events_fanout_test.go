package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
)

// observer counts what is published on every events subject, as a NATS
// user allowed to read them all would see it.
type observer struct{ ch chan *nats.Msg }

func observe(t *testing.T, url string) *observer {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o := &observer{ch: make(chan *nats.Msg, 1024)}
	if _, err := nc.ChanSubscribe("bulkhead.obj.events.>", o.ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return o
}

// next is the next message on an events subject, with its number.
func (o *observer) next(t *testing.T) (*nats.Msg, uint64) {
	t.Helper()
	m := <-o.ch
	_, seq, ok := strings.Cut(m.Header.Get(cluster.HeaderSeq), ".")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		t.Fatalf("a message without a number: %v", m.Header)
	}
	return m, n
}

// TestEventsFanOut: two clients subscribed to one object get its events
// from one NATS message each, which the node publishes once on the
// object's events subject; one leaving (closing its subscription, or
// exiting) leaves the other's subscription as it is; the last leaving
// ends the node's forwarder, which releases its reference, so that the
// object goes with its clients' handles.
func TestEventsFanOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave func(*cluster.Client, *cluster.Subscription)
	}{
		{"closing its subscription", func(_ *cluster.Client, s *cluster.Subscription) { s.Close() }},
		{"its client exiting", func(c *cluster.Client, _ *cluster.Subscription) { c.Close() }}, // the node's probe finds it gone
	} {
		t.Run(tc.name, func(t *testing.T) { testEventsFanOut(t, tc.leave) })
	}
}

func testEventsFanOut(t *testing.T, leave func(*cluster.Client, *cluster.Subscription)) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	n := startNode(t, url, "fo", 1)
	ctx := ctxT(t, 30*time.Second)
	a := dial(t, url, cluster.Options{}, 1)
	b := dial(t, url, cluster.Options{}, 1)
	oa := objectsOn(t, a, "fo")["fo"]
	if err := a.Register(ctx, "fan-out", oa, false); err != nil {
		t.Fatal(err)
	}
	ob, err := b.Lookup(ctx, "fan-out")
	if err != nil {
		t.Fatal(err)
	}
	obs := observe(t, url)
	sa, err := oa.Subscribe(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := ob.Subscribe(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	const k = 5
	if _, err := oa.Call(ctx, "burst", k); err != nil {
		t.Fatal(err)
	}
	for i := range int64(k) {
		for _, s := range []*cluster.Subscription{sa, sb} {
			var got int64
			if ev := <-s.Events(); ev.Name != "tick" || ev.Decode(0, &got) != nil || got != i {
				t.Fatalf("event %d: %s %v", i, ev.Name, got)
			}
		}
		if _, seq := obs.next(t); seq != uint64(i+1) {
			t.Fatalf("message %d on the events subject is number %d: more than one per event", i+1, seq)
		}
	}
	// b leaves; a's subscription goes on, and the subject still has one
	// message an event.
	leave(b, sb)
	if _, err := oa.Call(ctx, "add", 1); err != nil {
		t.Fatal(err)
	}
	if ev := <-sa.Events(); ev.Name != "changed" {
		t.Fatalf("after the other subscriber left: %s", ev.Name)
	}
	if _, seq := obs.next(t); seq != k+1 {
		t.Fatalf("the event after one subscriber left is number %d, want %d", seq, k+1)
	}
	// The last subscriber goes with its handle; the object with the
	// clients' handles, the forwarder's reference released.
	ob.Release() // nil, or ErrClosed: its client exited
	if err := oa.Release(); err != nil {
		t.Fatal(err)
	}
	for range sa.Events() {
	}
	if !errors.Is(sa.Err(), context.Canceled) {
		t.Fatalf("the subscription of a released handle: %v", sa.Err())
	}
	act := n.srv.Activator()
	for act.Stats().Objects != 0 {
		if err := waitBeat(ctx, url); err != nil {
			t.Fatalf("the forwarder kept the object: %+v", act.Stats())
		}
	}
}

// TestEventsGapAndHostile: what anyone allowed to publish on an events
// subject may send there is ignored unless it is the next event, by its
// number; a number skipped (NATS dropped events for a slow subscriber)
// ends the subscription as a slow one.
func TestEventsGapAndHostile(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "gh", 1)
	ctx := ctxT(t, 30*time.Second)
	c := dial(t, url, cluster.Options{}, 1)
	o := objectsOn(t, c, "gh")["gh"]
	defer o.Release()
	obs := observe(t, url)
	sub, err := o.Subscribe(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Call(ctx, "add", 1); err != nil {
		t.Fatal(err)
	}
	if ev := <-sub.Events(); ev.Name != "changed" {
		t.Fatalf("first event: %s", ev.Name)
	}
	first, _ := obs.next(t)
	gen, _, _ := strings.Cut(first.Header.Get(cluster.HeaderSeq), ".")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	event := first.Data // ["changed", [1]]
	for _, h := range []nats.Header{
		{},                                  // no number
		{cluster.HeaderSeq: {"x"}},          // not one
		{cluster.HeaderSeq: {gen + ".1"}},   // one delivered already
		{cluster.HeaderSeq: {"999." + "2"}}, // another forwarder's
		{cluster.HeaderSeq: {gen + ".2"}, cluster.HeaderStatus: {"garbage"}},
		{cluster.HeaderSeq: {strings.Repeat("9", 100) + ".2"}},
	} {
		if h.Get(cluster.HeaderStatus) == "" {
			h.Set(cluster.HeaderStatus, "event")
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: first.Subject, Header: h, Data: event}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: first.Subject, Data: []byte("garbage"),
		Header: nats.Header{cluster.HeaderSeq: {gen + ".2"}, cluster.HeaderStatus: {"event"}}}); err != nil {
		t.Fatal(err)
	}
	for range 6 + 1 {
		<-obs.ch
	}
	// The node's next event is number 2: it comes through.
	if _, err := o.Call(ctx, "add", 1); err != nil {
		t.Fatal(err)
	}
	var n int64
	if ev := <-sub.Events(); ev.Name != "changed" || ev.Decode(0, &n) != nil || n != 2 {
		t.Fatalf("the node's second event: %s %d", ev.Name, n)
	}
	obs.next(t)
	// A gap: number 4 after 2.
	if err := nc.PublishMsg(&nats.Msg{Subject: first.Subject, Data: event,
		Header: nats.Header{cluster.HeaderSeq: {fmt.Sprintf("%s.4", gen)}, cluster.HeaderStatus: {"event"}}}); err != nil {
		t.Fatal(err)
	}
	for range sub.Events() {
	}
	if !errors.Is(sub.Err(), activation.ErrSubscriberTooSlow) {
		t.Fatalf("after a gap: %v", sub.Err())
	}
}

// TestEventsBeforeEnd: the node's end of a subscription, on its reply
// subject, may be handled before the events numbered before it, which
// come on the events subject: the subscription delivers them first.
func TestEventsBeforeEnd(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "be", 1)
	ctx := ctxT(t, 30*time.Second)
	c := dial(t, url, cluster.Options{}, 1)
	o := objectsOn(t, c, "be")["be"]
	defer o.Release()
	obs := observe(t, url)
	// The subscribe request's reply subject: its answer carries the number.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replies := make(chan string, 4)
	if _, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get(cluster.HeaderSeq) != "" && m.Header.Get(cluster.HeaderStatus) == "result" {
			replies <- m.Subject
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	sub, err := o.Subscribe(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	reply := <-replies
	if _, err := o.Call(ctx, "add", 1); err != nil {
		t.Fatal(err)
	}
	first, _ := obs.next(t)
	<-sub.Events()
	gen, _, _ := strings.Cut(first.Header.Get(cluster.HeaderSeq), ".")
	end := func(subject string) *nats.Msg {
		return &nats.Msg{Subject: subject, Data: []byte("\xa2dkindfclosedgmessageegone."),
			Header: nats.Header{cluster.HeaderStatus: {"error"}, cluster.HeaderSeq: {gen + ".3"}}}
	}
	// The end on the reply subject first, then event 2 and the end on
	// the events subject, as a node whose events NATS delivers late.
	for _, m := range []*nats.Msg{end(reply),
		{Subject: first.Subject, Data: first.Data, Header: nats.Header{cluster.HeaderStatus: {"event"}, cluster.HeaderSeq: {gen + ".2"}}},
		end(first.Subject)} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	for range sub.Events() {
		got++
	}
	if got != 1 || !errors.Is(sub.Err(), bulkhead.ErrClosed) {
		t.Fatalf("after the end: %d events, %v; want event 2, then the end", got, sub.Err())
	}
}
