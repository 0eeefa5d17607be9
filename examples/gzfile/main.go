// Command gzfile calls zlib's gzip file API through bulkhead, with handles
// across calls: gzopen returns a gzFile that later calls take and gzclose
// lets go. `bulkhead gen` made gzbh/ from zlib.h and gzfile.toml, whose
// [[handle]] turns gzFile into a class of objects (PROTOCOL.md section 10):
// the pointer stays in the worker process that opened it, every call on the
// handle goes to that process, and Release calls gzclose there. A forged or
// stale object id is refused by the worker (unknown_object, checked by
// `bulkhead conform --classes` in CI), never turned into a pointer.
//
// It writes gzip files in several calls through two handles at once, each in
// a worker of its own, checks them with Go's compress/gzip, reads one back
// in pieces, reads a corrupt file (the error says why in zlib's words: the
// annotation's error, gzerror), then crashes zlib inside one handle's worker (gzwrite over a
// length that lies) and checks that the crash cost that handle only: its
// calls fail with activation.ErrObjectDisconnected, the other handle keeps
// working, and a new gzopen succeeds. It exits 0 when every check holds.
//
//	apt-get install zlib1g-dev   # zlib.h and libz for the worker
//	go run ./examples/gzfile
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/examples/gzfile/gzbh"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gzfile:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	srv, err := gzbh.Server(ctx)
	if err != nil {
		return fmt.Errorf("building the worker (is zlib1g-dev installed?): %w", err)
	}
	// Pooled: a new object goes to a server of its own while there are
	// fewer than two, so the two handles below live in two processes.
	srv.Classes[0].Instancing, srv.Classes[0].PoolSize = activation.Pooled, 2
	act, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{srv}})
	if err != nil {
		return err
	}
	defer act.Close(context.Background())
	dir, err := os.MkdirTemp("", "gzfile-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a.gz"), filepath.Join(dir, "b.gz")
	if err := writeTwo(ctx, act, a, b, out); err != nil {
		return err
	}
	if err := readBack(ctx, act, a, out); err != nil {
		return err
	}
	if err := refusals(ctx, act, dir, out); err != nil {
		return err
	}
	if err := crash(ctx, act, dir, out); err != nil {
		return err
	}
	fmt.Fprintln(out, "every check holds")
	return nil
}

// content is what file name gets: 64 KiB of text that names it.
func content(name string) []byte {
	return bytes.Repeat([]byte(name+": bulkhead keeps zlib's handles in the worker that made them.\n"), 1000)[:64<<10]
}

// writeTwo writes two files through two handles, one chunk of each in turn,
// so that every call must find its own handle's state.
func writeTwo(ctx context.Context, act gzbh.Activator, a, b string, out io.Writer) error {
	fa, err := gzbh.Open(ctx, act, a, "wb9")
	if err != nil {
		return fmt.Errorf("gzopen %s: %w", a, err)
	}
	defer fa.Release()
	fb, err := gzbh.Open(ctx, act, b, "wb1")
	if err != nil {
		return fmt.Errorf("gzopen %s: %w", b, err)
	}
	defer fb.Release()
	if fa.Object().PID() == fb.Object().PID() {
		return fmt.Errorf("both handles are in process %d; want one each (Pooled)", fa.Object().PID())
	}
	ca, cb := content(a), content(b)
	const chunk = 4 << 10
	for off := 0; off < len(ca); off += chunk {
		if err := fa.Write(ctx, ca[off:off+chunk]); err != nil {
			return fmt.Errorf("gzwrite a at %d: %w", off, err)
		}
		if off == len(ca)/2 { // a change of level mid-stream, on b's handle only
			if err := fb.SetParams(ctx, 9, 0); err != nil {
				return fmt.Errorf("gzsetparams b: %w", err)
			}
		}
		if err := fb.Write(ctx, cb[off:off+chunk]); err != nil {
			return fmt.Errorf("gzwrite b at %d: %w", off, err)
		}
	}
	for name, f := range map[string]*gzbh.GzFile{a: fa, b: fb} {
		if pos, err := f.Tell(ctx); err != nil || pos != int64(len(ca)) {
			return fmt.Errorf("gztell %s = %d, %v; want %d", name, pos, err, len(ca))
		}
		if err := f.Flush(ctx, 4); err != nil { // Z_FINISH
			return fmt.Errorf("gzflush %s: %w", name, err)
		}
	}
	fmt.Fprintf(out, "ok  two gzFile handles in processes %d and %d, %d interleaved gzwrite calls\n",
		fa.Object().PID(), fb.Object().PID(), 2*len(ca)/chunk)
	if err := fa.Release(); err != nil {
		return err
	}
	if err := fb.Release(); err != nil {
		return err
	}
	// Release returns before the worker runs gzclose; the files are
	// complete already (gzflush Z_FINISH), so Go can read them now.
	for _, name := range []string{a, b} {
		if err := goReads(name, content(name)); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "ok  Go's compress/gzip reads both files back to what was written")
	if _, err := fa.Tell(ctx); !errors.Is(err, activation.ErrReleased) {
		return fmt.Errorf("gztell on a released handle: %v; want activation.ErrReleased", err)
	}
	fmt.Fprintln(out, "ok  a released handle is refused: activation.ErrReleased")
	return nil
}

func goReads(name string, want []byte) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("Go cannot read %s: %w", name, err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("Go read %d bytes of %s (%v); want the %d written", len(got), name, err, len(want))
	}
	return nil
}

// readBack reads a file in pieces through one handle: each gzread goes on
// from where the last one stopped, in the same worker.
func readBack(ctx context.Context, act gzbh.Activator, name string, out io.Writer) error {
	f, err := gzbh.Open(ctx, act, name, "rb")
	if err != nil {
		return fmt.Errorf("gzopen %s: %w", name, err)
	}
	defer f.Release()
	var got []byte
	calls := 0
	for {
		p, err := f.Read(ctx, 5000)
		if err != nil {
			return fmt.Errorf("gzread at %d: %w", len(got), err)
		}
		calls++
		if len(p) == 0 {
			break
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, content(name)) {
		return fmt.Errorf("gzread gave %d bytes; want the %d written", len(got), len(content(name)))
	}
	if eof, err := f.EOF(ctx); err != nil || eof != 1 {
		return fmt.Errorf("gzeof = %d, %v; want 1", eof, err)
	}
	fmt.Fprintf(out, "ok  %d gzread calls on one handle read the file back; gzeof says 1\n", calls)
	return nil
}

// refusals checks a gzopen that returns NULL, and a gzread beyond the frame
// limit.
func refusals(ctx context.Context, act gzbh.Activator, dir string, out io.Writer) error {
	_, err := gzbh.Open(ctx, act, filepath.Join(dir, "no", "such.gz"), "rb")
	var re *bulkhead.RemoteError
	if !errors.As(err, &re) || re.Code != bulkhead.CodeApplication {
		return fmt.Errorf("gzopen of a missing file: %v; want a *bulkhead.RemoteError (NULL)", err)
	}
	fmt.Fprintf(out, "ok  a gzopen that returns NULL makes no object: %v\n", err)
	if err := corrupt(ctx, act, dir, out); err != nil {
		return err
	}
	f, err := gzbh.Open(ctx, act, filepath.Join(dir, "big.gz"), "wb")
	if err != nil {
		return err
	}
	defer f.Release()
	// A capacity is the caller's word too: the worker checks it against
	// the frame limit before it allocates.
	if _, err := f.Read(ctx, 1<<30); !errors.As(err, &re) || re.Code != bulkhead.CodeBadArguments {
		return fmt.Errorf("gzread of 1 GiB: %v; want a *bulkhead.RemoteError (bad arguments)", err)
	}
	fmt.Fprintln(out, "ok  a gzread of 1 GiB is refused before any allocation: over the frame limit")
	return nil
}

// corrupt reads a gzip header followed by a deflate block of the reserved
// type: gzread's -1 comes back with zlib's words for it (gzerror, the
// annotation's error).
func corrupt(ctx context.Context, act gzbh.Activator, dir string, out io.Writer) error {
	name := filepath.Join(dir, "corrupt.gz")
	if err := os.WriteFile(name, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x07}, 0o644); err != nil {
		return err
	}
	f, err := gzbh.Open(ctx, act, name, "rb")
	if err != nil {
		return err
	}
	defer f.Release()
	_, err = f.Read(ctx, 100)
	var re *bulkhead.RemoteError
	if want := "gzread returned -1: " + name + ": invalid block type"; !errors.As(err, &re) || re.Code != bulkhead.CodeApplication ||
		!strings.HasSuffix(re.Message, want) {
		return fmt.Errorf("gzread of a corrupt file: %v; want a *bulkhead.RemoteError ending %q", err, want)
	}
	fmt.Fprintf(out, "ok  gzread of a corrupt file says why, in zlib's words: %v\n", err)
	return nil
}

// crash makes zlib read 1 GiB past a 16-byte buffer in one handle's worker.
func crash(ctx context.Context, act gzbh.Activator, dir string, out io.Writer) error {
	victim, err := gzbh.Open(ctx, act, filepath.Join(dir, "victim.gz"), "wb")
	if err != nil {
		return err
	}
	defer victim.Release()
	other, err := gzbh.Open(ctx, act, filepath.Join(dir, "other.gz"), "wb")
	if err != nil {
		return err
	}
	defer other.Release()
	if victim.Object().PID() == other.Object().PID() {
		return fmt.Errorf("both handles are in process %d; want one each (Pooled)", victim.Object().PID())
	}
	_, err = victim.WriteUnchecked(ctx, make([]byte, 16), 1<<30)
	var ce *bulkhead.CrashError
	if !errors.Is(err, activation.ErrObjectDisconnected) || !errors.As(err, &ce) {
		return fmt.Errorf("gzwrite over a lying length: %v; want activation.ErrObjectDisconnected with a *bulkhead.CrashError", err)
	}
	fmt.Fprintf(out, "ok  gzwrite over a lying length crashed its worker (%v): %v\n", ce.Signal, err)
	if err := victim.Write(ctx, []byte("again")); !errors.Is(err, activation.ErrObjectDisconnected) {
		return fmt.Errorf("a call on the crashed handle: %v; want activation.ErrObjectDisconnected", err)
	}
	fmt.Fprintln(out, "ok  the crashed handle stays disconnected: no pointer of it lives anywhere else")
	if err := other.Write(ctx, []byte("still here")); err != nil {
		return fmt.Errorf("the other handle after the crash: %w", err)
	}
	again, err := gzbh.Open(ctx, act, filepath.Join(dir, "again.gz"), "wb")
	if err != nil {
		return fmt.Errorf("gzopen after the crash: %w", err)
	}
	defer again.Release()
	if err := again.Write(ctx, []byte("new")); err != nil {
		return fmt.Errorf("a new handle after the crash: %w", err)
	}
	fmt.Fprintln(out, "ok  the other handle and a new gzopen still work")
	return nil
}
