// Package surrogate builds a C worker from its source with the machine's C
// compiler, once, and caches the program: the workers `bulkhead gen` writes
// are C source embedded in the Go client package, compiled on first use, so
// that a program using them needs only a compiler and the library's
// development files, not a build step of its own.
package surrogate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	csdk "github.com/bulkhead-go/bulkhead/sdk/c"
)

// Source is a C worker to build.
type Source struct {
	// Name names the program (and its cache entry), e.g. "zlibbh".
	Name string
	// C is the worker's source; it includes "bulkhead.h", which Build
	// provides.
	C string
	// Flags are the compiler's and linker's, after the source: "-lz".
	// Zero value: none.
	Flags []string
}

// Options says where and with what to build. Its zero value uses $CC (or
// cc) and the user's cache directory.
type Options struct {
	// CC is the compiler. Zero value: $CC, or "cc".
	CC string
	// Dir is the cache directory. Zero value: os.UserCacheDir()/bulkhead/surrogate.
	Dir string
}

// BuildError is a compile that failed, with the compiler's output.
type BuildError struct {
	Cmd    string
	Output string
	Err    error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("surrogate: %s: %v\n%s", e.Cmd, e.Err, strings.TrimSpace(e.Output))
}

func (e *BuildError) Unwrap() error { return e.Err }

// Build returns the path of the compiled worker, compiling it if the cache
// has no program for this source, SDK, compiler and flags.
func Build(ctx context.Context, src Source, o Options) (string, error) {
	if src.Name == "" || strings.ContainsAny(src.Name, "/\x00") {
		return "", fmt.Errorf("surrogate: bad program name %q", src.Name)
	}
	cc := o.CC
	if cc == "" {
		cc = os.Getenv("CC")
	}
	if cc == "" {
		cc = "cc"
	}
	dir := o.Dir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("surrogate: %w", err)
		}
		dir = filepath.Join(base, "bulkhead", "surrogate")
	}
	h := sha256.New()
	for _, s := range append([]string{cc, src.C, csdk.Header}, src.Flags...) {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	entry := filepath.Join(dir, src.Name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(entry, src.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := compile(ctx, cc, entry, src); err != nil {
		return "", err
	}
	return bin, nil
}

// compile builds into a fresh directory beside entry and renames it into
// place, so that a concurrent build or a crash never leaves half a program.
func compile(ctx context.Context, cc, entry string, src Source) error {
	if err := os.MkdirAll(filepath.Dir(entry), 0o755); err != nil {
		return fmt.Errorf("surrogate: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(entry), ".build-")
	if err != nil {
		return fmt.Errorf("surrogate: %w", err)
	}
	defer os.RemoveAll(tmp)
	for name, text := range map[string]string{"bulkhead.h": csdk.Header, src.Name + ".c": src.C} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("surrogate: %w", err)
		}
	}
	args := append([]string{"-std=c99", "-O2", "-Wall", "-I", tmp, "-o", filepath.Join(tmp, src.Name),
		filepath.Join(tmp, src.Name+".c")}, src.Flags...)
	cmd := exec.CommandContext(ctx, cc, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &BuildError{Cmd: cc + " " + strings.Join(args, " "), Output: out.String(), Err: err}
	}
	os.Remove(filepath.Join(tmp, "bulkhead.h"))
	os.Remove(filepath.Join(tmp, src.Name+".c"))
	if err := os.Rename(tmp, entry); err != nil {
		if _, serr := os.Stat(filepath.Join(entry, src.Name)); serr == nil {
			return nil // another build won the race
		}
		return fmt.Errorf("surrogate: %w", err)
	}
	return nil
}
