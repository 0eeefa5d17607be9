// Command xmldoc calls libxml2 through bulkhead, with handles across calls:
// xmlReadMemory parses a document and returns an xmlDocPtr, which later
// calls take and xmlFreeDoc lets go. `bulkhead gen` made xmlbh/ from
// libxml2's tree.h and xmldoc.toml, whose [[handle]] turns xmlDocPtr into a
// class of objects (PROTOCOL.md section 10): the parsed document stays in
// the worker process that parsed it, every call on it goes there, and
// Release calls xmlFreeDoc there.
//
// It parses two documents, each in a worker of its own, dumps one back with
// xmlDocDumpMemory (a buffer libxml2 allocates; the worker copies it back
// and frees it with xmlFree) and checks it with Go's encoding/xml, keeps a
// setting per document across calls, saves one with xmlSaveFile, then makes
// libxml2 crash (xmlReadMemory over a size that lies) and checks that the
// crash cost that worker's documents only: their calls fail with
// activation.ErrObjectDisconnected, the other one works. It exits 0 when
// every check holds.
//
//	apt-get install libxml2-dev   # libxml2's headers and library for the worker
//	go run ./examples/xmldoc
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/examples/xmldoc/xmlbh"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "xmldoc:", err)
		os.Exit(1)
	}
}

// catalog is the documents' shape, as Go's encoding/xml reads it.
type catalog struct {
	XMLName xml.Name `xml:"catalog"`
	Name    string   `xml:"name,attr"`
	Books   []struct {
		ID    int    `xml:"id,attr"`
		Title string `xml:",chardata"`
	} `xml:"book"`
}

func document(name string, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n<catalog name=%q>", name)
	for i := range n {
		fmt.Fprintf(&b, "<book id=\"%d\">%s volume %d &amp; more</book>", i, name, i)
	}
	b.WriteString("</catalog>\n")
	return b.Bytes()
}

func run(ctx context.Context, out io.Writer) error {
	srv, err := xmlbh.Server(ctx)
	if err != nil {
		return fmt.Errorf("building the worker (is libxml2-dev installed?): %w", err)
	}
	// Pooled: a new object goes to a server of its own while there are
	// fewer than two, so the two documents live in two processes.
	srv.Classes[0].Instancing, srv.Classes[0].PoolSize = activation.Pooled, 2
	act, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{srv}})
	if err != nil {
		return err
	}
	defer act.Close(context.Background())
	srcA, srcB := document("a", 200), document("b", 3)
	a, err := xmlbh.ReadMemory(ctx, act, srcA, 0)
	if err != nil {
		return fmt.Errorf("xmlReadMemory a: %w", err)
	}
	defer a.Release()
	b, err := xmlbh.ReadMemory(ctx, act, srcB, 0)
	if err != nil {
		return fmt.Errorf("xmlReadMemory b: %w", err)
	}
	defer b.Release()
	if a.Object().PID() == b.Object().PID() {
		return fmt.Errorf("both documents are in process %d; want one each (Pooled)", a.Object().PID())
	}
	for name, d := range map[string]*xmlbh.XMLDoc{"a": a, "b": b} {
		dump, err := d.DumpMemory(ctx)
		if err != nil {
			return fmt.Errorf("xmlDocDumpMemory %s: %w", name, err)
		}
		if err := sameDocument(dump, map[string][]byte{"a": srcA, "b": srcB}[name]); err != nil {
			return fmt.Errorf("xmlDocDumpMemory %s: %w", name, err)
		}
	}
	fmt.Fprintf(out, "ok  two xmlDocPtr handles in processes %d and %d; xmlDocDumpMemory of each reads in Go as its source\n",
		a.Object().PID(), b.Object().PID())
	if err := settings(ctx, a, b); err != nil {
		return err
	}
	fmt.Fprintln(out, "ok  xmlSetDocCompressMode on a is kept across calls, and b's is its own")
	gz, err := save(ctx, a, srcA)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ok  xmlSaveFile wrote a's document (gzip: %v, at compress mode 9), and Go reads it as the source; into a missing directory it fails with errno's words\n", gz)
	if _, err := xmlbh.ReadMemory(ctx, act, []byte("<open><never-closed>"), 0); !isApplication(err) {
		return fmt.Errorf("xmlReadMemory of broken XML: %v; want a *bulkhead.RemoteError (NULL)", err)
	}
	fmt.Fprintln(out, "ok  broken XML makes no object: xmlReadMemory's NULL is the caller's *bulkhead.RemoteError")
	if err := crash(ctx, act, a, b, out); err != nil {
		return err
	}
	fmt.Fprintln(out, "every check holds")
	return nil
}

func isApplication(err error) bool {
	var re *bulkhead.RemoteError
	return errors.As(err, &re) && re.Code == bulkhead.CodeApplication
}

// sameDocument checks that got and want read the same in Go.
func sameDocument(got, want []byte) error {
	var g, w catalog
	if err := xml.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("Go cannot read %d bytes: %w", len(got), err)
	}
	if err := xml.Unmarshal(want, &w); err != nil {
		return err
	}
	if !reflect.DeepEqual(g, w) || len(g.Books) == 0 {
		return fmt.Errorf("Go reads %d books of %q; want %d of %q", len(g.Books), g.Name, len(w.Books), w.Name)
	}
	return nil
}

func settings(ctx context.Context, a, b *xmlbh.XMLDoc) error {
	before, err := b.CompressMode(ctx) // -1: the process's default
	if err != nil || before == 9 {
		return fmt.Errorf("xmlGetDocCompressMode b = %d, %v; want a fresh document's", before, err)
	}
	if err := a.SetCompressMode(ctx, 9); err != nil {
		return err
	}
	if m, err := a.CompressMode(ctx); err != nil || m != 9 {
		return fmt.Errorf("xmlGetDocCompressMode a = %d, %v; want 9", m, err)
	}
	if m, err := b.CompressMode(ctx); err != nil || m != before {
		return fmt.Errorf("xmlGetDocCompressMode b = %d, %v; want %d, unchanged", m, err, before)
	}
	return nil
}

// save writes a with xmlSaveFile and reads the file back in Go: gzip at
// compress mode 9 where libxml2 was built with zlib (Debian's is), plain
// otherwise.
func save(ctx context.Context, a *xmlbh.XMLDoc, src []byte) (gz bool, err error) {
	dir, err := os.MkdirTemp("", "xmldoc-example-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "a.xml.gz")
	if err := a.SaveFile(ctx, path); err != nil {
		return false, fmt.Errorf("xmlSaveFile: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if gz = bytes.HasPrefix(data, []byte{0x1f, 0x8b}); gz {
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return gz, err
		}
		if data, err = io.ReadAll(r); err != nil {
			return gz, fmt.Errorf("xmlSaveFile's gzip: %w", err)
		}
	}
	if err := sameDocument(data, src); err != nil {
		return gz, fmt.Errorf("xmlSaveFile: %w", err)
	}
	// Into a directory that is not there: -1, and errno's words (the
	// annotation's error).
	err = a.SaveFile(ctx, filepath.Join(dir, "no", "a.xml"))
	var re *bulkhead.RemoteError
	if want := "xmlSaveFile returned -1: No such file or directory"; !errors.As(err, &re) || !strings.HasSuffix(re.Message, want) {
		return gz, fmt.Errorf("xmlSaveFile into a missing directory: %v; want a *bulkhead.RemoteError ending %q", err, want)
	}
	return gz, nil
}

// crash makes libxml2 read 1 GiB past a 16-byte buffer, in the worker the
// activation goes to: the activation fails with a *bulkhead.CrashError, the
// documents in that process are disconnected with it (a process's objects
// share its fate, as in COM), and those in the other process are untouched.
func crash(ctx context.Context, act xmlbh.Activator, a, b *xmlbh.XMLDoc, out io.Writer) error {
	_, err := xmlbh.ReadMemoryUnchecked(ctx, act, []byte("<a>0123456789</a"), 1<<30, 0)
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) {
		return fmt.Errorf("xmlReadMemory over a lying size: %v; want a *bulkhead.CrashError", err)
	}
	fmt.Fprintf(out, "ok  xmlReadMemory over a lying size crashed worker %d (%v)\n", ce.PID, ce.Signal)
	survivors := 0
	for name, d := range map[string]*xmlbh.XMLDoc{"a": a, "b": b} {
		_, err := d.DumpMemory(ctx)
		switch {
		case d.Object().PID() == ce.PID && !errors.Is(err, activation.ErrObjectDisconnected):
			return fmt.Errorf("%s, in the crashed worker: %v; want activation.ErrObjectDisconnected", name, err)
		case d.Object().PID() != ce.PID && err != nil:
			return fmt.Errorf("%s, in worker %d, after worker %d crashed: %w", name, d.Object().PID(), ce.PID, err)
		case d.Object().PID() != ce.PID:
			survivors++
		}
	}
	if survivors != 1 {
		return fmt.Errorf("%d documents outside the crashed worker; want 1 (two processes, one each)", survivors)
	}
	fmt.Fprintln(out, "ok  the document in that worker is disconnected (activation.ErrObjectDisconnected); the other still dumps")
	return nil
}
