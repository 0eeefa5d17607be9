package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/bulkhead-go/bulkhead/internal/gen"
	"github.com/spf13/cobra"
)

func newGenCmd() *cobra.Command {
	var specPath, out string
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
from what it would write.`,
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
			return writeGenerated(cmd, out, files, check)
		},
	}
	cmd.Flags().StringVar(&specPath, "spec", "", "the annotation file (TOML)")
	cmd.Flags().StringVar(&out, "out", "", "the directory to write the Go package and worker.c into")
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; exit 1 if the files in --out are not what gen would write")
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
