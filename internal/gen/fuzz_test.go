package gen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseSpec: an annotation file is input from whoever wrote it, and what
// it accepts ends up in generated C. ParseSpec never panics, and whatever it
// accepts names only C identifiers, has no expression that could end a C
// statement, and exposes each method once.
func FuzzParseSpec(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	more, _ := filepath.Glob("testdata/*/*.toml")
	examples, _ := filepath.Glob("../../examples/*/*.toml")
	for _, name := range append(append(seeds, more...), examples...) {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("fuzz.toml", data)
		if err != nil {
			return
		}
		methods := map[string]bool{}
		for _, fs := range s.Funcs {
			if !identRE.MatchString(fs.Name) || !identRE.MatchString(fs.GoName) || methods[fs.Method] {
				t.Fatalf("accepted func %+v", fs)
			}
			methods[fs.Method] = true
			if strings.ContainsAny(fs.Error, ";{}\n") || (fs.Error != "" && fs.Status == "") {
				t.Fatalf("accepted %s's error %q (status %q)", fs.Name, fs.Error, fs.Status)
			}
			for name, p := range fs.Params {
				for _, e := range []string{p.Len, p.Cap, p.Init, p.Free, fs.Status} {
					if strings.ContainsAny(e, ";{}\n") {
						t.Fatalf("accepted %s's param %s with %q", fs.Name, name, e)
					}
				}
			}
		}
		for _, fl := range s.Flags {
			if fl == "" || strings.ContainsAny(fl, "\x00\n\r") || strings.Contains(fl, "*/") {
				t.Fatalf("accepted flag %q", fl)
			}
		}
		for _, h := range s.Handles {
			if !identRE.MatchString(h.Type) || !identRE.MatchString(h.Class) || !identRE.MatchString(h.Free) {
				t.Fatalf("accepted handle %+v", h)
			}
		}
	})
}
