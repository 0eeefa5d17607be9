package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/bulkhead-go/bulkhead/internal/gen"
	"github.com/bulkhead-go/bulkhead/surrogate"
	"github.com/spf13/cobra"
)

func newGenCmd() *cobra.Command {
	var specPath, out, build string
	var check bool
	cmd := &cobra.Command{
		Use:   "gen --spec FILE.toml --out DIR",
		Short: "Generate a typed Go client and a C worker for a C library from its header",
		Long: `gen parses the header that the annotation file names (with modernc.org/cc/v4,
on the compiler's include path), and writes into --out a Go package with one
typed function per annotated C function, and worker.c, a worker on the C SDK
that calls the library; the Go package compiles it on first use. The
annotations say how each pointer parameter travels (docs/GEN.md). With
--check, nothing is written: the command exits 1 if the files in --out differ
from what it would write. With --build PATH, gen also compiles the worker
(with $CC, or cc, as the Go package would on first use) and writes the
program to PATH: a compile error shows now, not at the first call, and PATH
is a command for a pool's Config.Command or a bulkhead serve config.`,
		Example: `  bulkhead gen --spec examples/zlib/zlib.toml --out examples/zlib/zlibbh`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if specPath == "" || out == "" {
				return usagef("--spec and --out are required")
			}
			data, err := os.ReadFile(specPath)
			if err != nil {
				return err
			}
			spec, err := gen.ParseSpec(specPath, data)
			if err != nil {
				return err
			}
			files, err := gen.Generate(spec)
			if err != nil {
				return err
			}
			if err := writeGenerated(cmd, out, files, check); err != nil {
				return err
			}
			if build != "" {
				return buildGenerated(cmd, spec, files, build)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&specPath, "spec", "", "the annotation file (TOML)")
	cmd.Flags().StringVar(&out, "out", "", "the directory to write the Go package and worker.c into")
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; exit 1 if the files in --out are not what gen would write")
	cmd.Flags().StringVar(&build, "build", "", "also compile the worker and write the program to this path")
	return cmd
}

// writeGenerated writes files into dir, or with check compares them.
func writeGenerated(cmd *cobra.Command, dir string, files map[string][]byte, check bool) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var stale []string
	for _, n := range names {
		path := filepath.Join(dir, n)
		if check {
			if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, files[n]) {
				stale = append(stale, path)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, files[n], 0o644); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", path)
	}
	if len(stale) > 0 {
		return exitError{1, fmt.Errorf("not what gen writes (rerun it): %v", stale)}
	}
	return nil
}

// buildGenerated compiles the generated worker as its Go package would, and
// copies the program to path.
func buildGenerated(cmd *cobra.Command, spec *gen.Spec, files map[string][]byte, path string) error {
	dir, err := os.MkdirTemp("", "bulkhead-gen-build")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := surrogate.Build(cmd.Context(), surrogate.Source{Name: spec.Package, C: string(files[gen.WorkerFile]),
		Flags: spec.Flags}, surrogate.Options{Dir: dir})
	if err != nil {
		return err
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "built %s\n", path)
	return nil
}
