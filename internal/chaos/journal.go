package chaos

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// readJournals counts the journaled starts of each call key.
func readJournals(dir string, n int) ([]int, int, error) {
	starts := make([]int, n+1)
	files, err := filepath.Glob(filepath.Join(dir, "journal-*"))
	if err != nil {
		return nil, 0, err
	}
	records := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, 0, err
		}
		if len(b)%recordSize != 0 {
			return nil, 0, fmt.Errorf("journal %s: %d bytes, not whole records", f, len(b))
		}
		for off := 0; off < len(b); off += recordSize {
			key := binary.LittleEndian.Uint64(b[off:])
			if binary.LittleEndian.Uint32(b[off+12:]) != recordMagic || key == 0 || key > uint64(n) {
				return nil, 0, fmt.Errorf("journal %s: bad record at %d", f, off)
			}
			starts[key]++
			records++
		}
	}
	return starts, records, nil
}
