// Package gen is `bulkhead gen`: it reads a C header with modernc.org/cc/v4
// and a small annotation file saying how each pointer parameter is copied,
// and writes a typed Go client package and a C worker on the C SDK that
// calls the library (docs/GEN.md).
package gen

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Spec is the annotation file: which functions of which header, and how
// their pointers travel.
type Spec struct {
	// Header is included as <Header>: a name on the compiler's include path
	// (zlib.h), or an absolute path.
	Header string `toml:"header"`
	// Package is the Go package name of the client.
	Package string `toml:"package"`
	// Flags are the worker's compiler and linker flags: ["-lz"].
	Flags []string `toml:"flags"`
	// Include are directories to find the header in, relative to the spec
	// file, before the compiler's own. Zero value: only the compiler's.
	Include []string `toml:"include"`
	// Before are headers included before Header, for a header that needs
	// them and does not include them itself (jpeglib.h and stdio.h).
	// Zero value: none.
	Before []string `toml:"before"`
	// Passthrough also writes passthrough.go (build tag
	// bulkhead_passthrough), whose Passthrough() is a Caller that runs the
	// calls in the test's own process against the library, and a copy of
	// bulkhead.h that it compiles with. Zero value: neither.
	Passthrough bool `toml:"passthrough"`
	// Funcs are the functions to expose, in the order they are written.
	Funcs []FuncSpec `toml:"func"`
	// Handles are the library's opaque pointer types that live across
	// calls (docs/GEN.md, "Handles"): each becomes a class of objects
	// (PROTOCOL.md section 10) whose state is the pointer, which never
	// leaves the worker. Zero value: none.
	Handles []HandleSpec `toml:"handle"`

	file string // where the spec came from, for errors
}

// FuncSpec is one exposed function.
type FuncSpec struct {
	Name   string `toml:"name"`    // the C function
	GoName string `toml:"go_name"` // zero value: Name with its first letter upper-cased
	Method string `toml:"method"`  // zero value: Name
	// Status is a C expression on `ret` that is true when the call worked
	// ("ret == Z_OK"); the return value then is not a result. Zero value:
	// the return value (if not void) is the first result.
	Status string `toml:"status"`
	// Error is a C expression, evaluated when Status is false, that gives
	// the library's words for the failure as a const char * (or unsigned
	// char *): "zError(ret)", "strerror(errno)", where errno is the call's,
	// captured right after it. The worker adds it to the error's message,
	// cut to whole UTF-8 characters before any control byte, at most
	// errTextMax bytes. Zero value, or NULL or "" at run time: the message
	// names ret only.
	Error string `toml:"error"`
	// Unchecked keeps the length parameters as arguments that the Go caller
	// passes and the worker does not check against the buffers: the way to
	// show what a lying length does. Zero value: lengths come from the
	// buffers.
	Unchecked bool `toml:"unchecked"`
	// Args are extra unsigned integer arguments that expressions can use,
	// such as an output's capacity.
	Args []string `toml:"args"`
	// ResultFree is a C expression that lets a string result go once it is
	// copied into the reply ("free(ret)", "sqlite3_free(ret)"). Zero
	// value: the string belongs to the library (static, or borrowed from
	// an object) and is not freed.
	ResultFree string `toml:"result_free"`
	// Params annotate the pointer parameters, by name.
	Params map[string]ParamSpec `toml:"params"`
}

// HandleSpec is an opaque pointer type that one function returns and others
// take. A function that returns it and takes none is a constructor: an
// activation of the class. A function that takes it as one parameter is a
// method of the class's objects, which passes the object's pointer there.
// Free runs when the object is released, or its worker ends it.
type HandleSpec struct {
	// Type is the C type as the header spells it ("gzFile", "xmlDocPtr").
	Type string `toml:"type"`
	// Class is the class's name, and the Go type's ("GzFile").
	Class string `toml:"class"`
	// Free is the function that lets a handle go: it takes the handle
	// alone ("gzclose"). It is never exposed as a method.
	Free string `toml:"free"`

	canon string // the type through its typedefs (model.go's canon), once resolved
}

// ParamSpec says how one pointer parameter is copied.
type ParamSpec struct {
	// Dir is "in" (copied to the worker), "out" (copied back), "inout"
	// (both), "null" (always NULL), or "local": a pointer the worker makes
	// for the one call, with Init, checked not NULL, and lets go with Free
	// (an opaque handle such as TurboJPEG's tjhandle).
	Dir string `toml:"dir"`
	// String makes an "in" char pointer a NUL-terminated string.
	String bool `toml:"string"`
	// Len is the buffer's length: the name of an integer parameter, or a
	// constant. For "in", the parameter is set from the buffer; for "out",
	// a C expression for the bytes produced (often an inout length's name).
	Len string `toml:"len"`
	// Cap is an "out" buffer's capacity, a C expression over the
	// parameters and Args, checked against the frame limit.
	Cap string `toml:"cap"`
	// Init is the C expression an "inout" or "out" scalar starts from.
	// Zero value: 0.
	Init string `toml:"init"`
	// Result returns an "out" or "inout" scalar to the caller.
	Result bool `toml:"result"`
	// Free is the C statement's expression that lets a "local" pointer go
	// after the call ("tjDestroy(handle)"), or an "out" buffer that the
	// library allocated (a pointer to a byte pointer: "xmlFree(mem)").
	// Zero value: nothing for a local, free(NAME) for a library's buffer.
	Free string `toml:"free"`
}

var (
	identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	constRE = regexp.MustCompile(`^[0-9]+$`)
)

// ParseSpec decodes and checks an annotation file; file names it in errors.
func ParseSpec(file string, data []byte) (*Spec, error) {
	var s Spec
	md, err := toml.Decode(string(data), &s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("%s: unknown key %q", file, keys[0].String())
	}
	s.file = file
	for i, dir := range s.Include {
		if !filepath.IsAbs(dir) {
			s.Include[i] = filepath.Join(filepath.Dir(file), dir)
		}
	}
	return &s, s.check()
}

// errorf is a spec error naming the file and the key.
func (s *Spec) errorf(key, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %s", s.file, key, fmt.Sprintf(format, a...))
}

func (s *Spec) check() error {
	switch {
	case s.Header == "" || strings.ContainsAny(s.Header, "<>\"\n"):
		return s.errorf("header", "want a header name such as \"zlib.h\", got %q", s.Header)
	case !identRE.MatchString(s.Package):
		return s.errorf("package", "%q is not a Go package name", s.Package)
	case len(s.Funcs) == 0:
		return s.errorf("func", "no functions to expose")
	}
	for _, fl := range s.Flags {
		// A flag goes into a command line and a #cgo comment line.
		if fl == "" || strings.ContainsAny(fl, "\x00\n\r") || strings.Contains(fl, "*/") {
			return s.errorf("flags", "%q is not a compiler flag", fl)
		}
	}
	for _, h := range s.Before {
		if h == "" || strings.ContainsAny(h, "<>\"\n") {
			return s.errorf("before", "want header names, got %q", h)
		}
	}
	if err := s.checkHandles(); err != nil {
		return err
	}
	methods := map[string]bool{}
	for i := range s.Funcs {
		f := &s.Funcs[i]
		key := fmt.Sprintf("func[%d]", i)
		if !identRE.MatchString(f.Name) {
			return s.errorf(key+".name", "%q is not a C identifier", f.Name)
		}
		if f.GoName == "" {
			f.GoName = strings.ToUpper(f.Name[:1]) + f.Name[1:]
		}
		if f.Method == "" {
			f.Method = f.Name
		}
		if !identRE.MatchString(f.GoName) || f.GoName[:1] != strings.ToUpper(f.GoName[:1]) {
			return s.errorf(key+".go_name", "%q is not an exported Go identifier", f.GoName)
		}
		if methods[f.Method] || methods[f.GoName] {
			return s.errorf(key+".method", "%q is exposed twice", f.Method)
		}
		methods[f.Method], methods[f.GoName] = true, true
		if err := s.checkFunc(key, f); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spec) checkHandles() error {
	seen := map[string]bool{}
	for i, h := range s.Handles {
		key := fmt.Sprintf("handle[%d]", i)
		switch {
		case !identRE.MatchString(h.Type):
			return s.errorf(key+".type", "want a C type name such as \"gzFile\", got %q (a handle is a pointer typedef of the header; a bare pointer such as \"sqlite3 *\" is not supported yet)", h.Type)
		case !identRE.MatchString(h.Class) || h.Class[:1] != strings.ToUpper(h.Class[:1]):
			return s.errorf(key+".class", "%q is not an exported Go identifier", h.Class)
		case !identRE.MatchString(h.Free):
			return s.errorf(key+".free", "%q is not a C function name", h.Free)
		case seen[h.Type] || seen["class "+h.Class]:
			return s.errorf(key, "type %q or class %q is declared twice", h.Type, h.Class)
		}
		seen[h.Type], seen["class "+h.Class] = true, true
		for _, f := range s.Funcs {
			if f.Name == h.Free {
				return s.errorf(key+".free", "%s runs at Release; it cannot also be a func", h.Free)
			}
		}
	}
	return nil
}

func (s *Spec) checkFunc(key string, f *FuncSpec) error {
	for _, a := range f.Args {
		if !identRE.MatchString(a) {
			return s.errorf(key+".args", "%q is not an identifier", a)
		}
	}
	for _, name := range sortedKeys(f.Params) {
		p := f.Params[name]
		pk := key + ".params." + name
		switch p.Dir {
		case "in", "out", "inout", "null":
		case "local":
			if p.Init == "" {
				return s.errorf(pk+".init", "a local pointer needs init, the C expression that makes it")
			}
		default:
			return s.errorf(pk+".dir", "want in, out, inout, null or local, got %q", p.Dir)
		}
		if p.String && p.Dir != "in" {
			return s.errorf(pk+".string", "only an \"in\" parameter can be a string")
		}
		if p.Len != "" && !identRE.MatchString(p.Len) && !constRE.MatchString(p.Len) && p.Dir != "out" {
			return s.errorf(pk+".len", "want a parameter name or a constant, got %q", p.Len)
		}
		for _, e := range []struct{ k, v string }{{"len", p.Len}, {"cap", p.Cap}, {"init", p.Init}, {"free", p.Free}} {
			if strings.ContainsAny(e.v, ";{}\n") {
				return s.errorf(pk+"."+e.k, "%q is not a C expression", e.v)
			}
		}
	}
	if strings.ContainsAny(f.Status, ";{}\n") {
		return s.errorf(key+".status", "%q is not a C expression", f.Status)
	}
	if strings.ContainsAny(f.Error, ";{}\n") {
		return s.errorf(key+".error", "%q is not a C expression", f.Error)
	}
	if f.Error != "" && f.Status == "" {
		return s.errorf(key+".error", "takes a status: it is evaluated when status is false")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ErrSpec is matched by errors about a spec that does not fit its header.
var ErrSpec = errors.New("annotation does not fit the header")
