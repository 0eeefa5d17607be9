package stackscan

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	in := "55d0c0a1b000-55d0c0a1c000 r--p 00000000 fd:01 1234                       /usr/bin/a prog\n" +
		"55d0c0a1c000-55d0c0a1d000 r-xp 00001000 fd:01 1234 /usr/bin/a prog\n" +
		"7ffc1000-7ffc2000 rw-p 00000000 00:00 0                          [stack]\n" +
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n" +
		"garbage line\n" +
		"2000-1000 r-xp 00000000 00:00 0 /backwards\n" +
		"1000-2000 r-xpx 00000000 00:00 0 /badperms\n" +
		"1000-2000 r-xp 0 00:00 zz /badinode\n" +
		"3000-4000 r-xp 00000000 fd:01 77 /lib/x.so (deleted)"
	ms := ParseMaps([]byte(in))
	want := []Mapping{
		{0x55d0c0a1b000, 0x55d0c0a1c000, "r--p", 0, unix.Mkdev(0xfd, 1), 1234, "/usr/bin/a prog"},
		{0x55d0c0a1c000, 0x55d0c0a1d000, "r-xp", 0x1000, unix.Mkdev(0xfd, 1), 1234, "/usr/bin/a prog"},
		{0x7ffc1000, 0x7ffc2000, "rw-p", 0, 0, 0, "[stack]"},
		{0x7f0000000000, 0x7f0000001000, "rw-p", 0, 0, 0, ""},
		{0x3000, 0x4000, "r-xp", 0, unix.Mkdev(0xfd, 1), 77, "/lib/x.so (deleted)"},
	}
	if len(ms) != len(want) {
		t.Fatalf("ParseMaps: %+v", ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d: %+v, want %+v", i, ms[i], want[i])
		}
	}
	if !ms[1].Exec() || ms[0].Exec() || ms[2].Exec() {
		t.Errorf("Exec wrong: %v %v %v", ms[0].Exec(), ms[1].Exec(), ms[2].Exec())
	}
}

func TestParseSyscall(t *testing.T) {
	tests := []struct {
		in   string
		want Syscall
		ok   bool
	}{
		{"running\n", Syscall{Running: true}, true},
		{"230 0x0 0x0 0x7ffd3 0x7ffd3 0x0 0x0 0x7ffd2f8 0x7f8a1b2c\n", Syscall{NR: 230, SP: 0x7ffd2f8, PC: 0x7f8a1b2c}, true},
		{"-1 0x7ffd2f8 0x7f8a1b2c\n", Syscall{NR: -1, SP: 0x7ffd2f8, PC: 0x7f8a1b2c}, true},
		{"-1 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8", Syscall{}, false}, // -1 has no arguments
		{"230 0x1 0x2", Syscall{}, false},
		{"-2 0x1 0x2", Syscall{}, false},
		{"230 0x0 0x0 0x0 0x0 0x0 0x0 7ffd 0x1", Syscall{}, false}, // no 0x
		{"99999999999 0x0 0x0 0x0 0x0 0x0 0x0 0x1 0x1", Syscall{}, false},
		{"", Syscall{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseSyscall([]byte(tt.in))
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("ParseSyscall(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCallBefore(t *testing.T) {
	tests := []struct {
		arch string
		code [8]byte
		want bool
	}{
		{"amd64", [8]byte{0, 0, 0, 0xE8, 1, 2, 3, 4}, true},          // call rel32
		{"amd64", [8]byte{0, 0, 0, 0, 0, 0, 0xFF, 0xD0}, true},       // call rax
		{"amd64", [8]byte{0, 0, 0, 0, 0, 0x41, 0xFF, 0xD3}, true},    // call r11
		{"amd64", [8]byte{0, 0, 0xFF, 0x15, 1, 2, 3, 4}, true},       // call [rip+disp32]
		{"amd64", [8]byte{0, 0, 0, 0, 0, 0xFF, 0x50, 0x08}, true},    // call [rax+8]
		{"amd64", [8]byte{0, 0, 0, 0, 0xFF, 0x54, 0x24, 0x08}, true}, // call [rsp+8]
		{"amd64", [8]byte{0, 0xFF, 0x14, 0x25, 1, 2, 3, 4}, true},    // call [disp32]
		{"amd64", [8]byte{0, 0, 0, 0, 0, 0, 0xFF, 0xE0}, false},      // jmp rax
		{"amd64", [8]byte{0x48, 0x89, 0xC7, 0x48, 0x89, 0xC6, 0x90, 0x90}, false},
		{"arm64", [8]byte{0, 0, 0, 0, 0x05, 0, 0, 0x94}, true},        // bl
		{"arm64", [8]byte{0, 0, 0, 0, 0x00, 0x02, 0x3F, 0xD6}, true},  // blr x16
		{"arm64", [8]byte{0, 0, 0, 0, 0x00, 0x02, 0x1F, 0xD6}, false}, // br x16
		{"riscv64", [8]byte{0, 0, 0, 0xE8, 1, 2, 3, 4}, false},
	}
	for _, tt := range tests {
		if got := callBefore(tt.arch, tt.code); got != tt.want {
			t.Errorf("callBefore(%s, % x) = %v", tt.arch, tt.code, got)
		}
	}
}

// A file that is not ELF, or not the inode mapped, has no symbols.
func TestLoadNotELF(t *testing.T) {
	if _, err := Load("parse_test.go", nil); err == nil {
		t.Error("Load of a Go source file succeeded")
	}
	if _, err := Load("/proc/self/exe", &Mapping{Inode: 1}); err == nil || !strings.Contains(err.Error(), "inode") {
		t.Errorf("Load of another inode: %v", err)
	}
	// A FIFO where the file was: refused at once, not waited on.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo, nil); err == nil {
		t.Error("Load of a FIFO succeeded")
	}
	// A device, even behind a symbolic link: refused before it is opened
	// for reading.
	link := filepath.Join(t.TempDir(), "lib.so")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link, nil); !errors.Is(err, ErrNotELF) {
		t.Errorf("Load of a link to /dev/zero: %v; want ErrNotELF", err)
	}
	// A real ELF file whose symbol table is over the bound given.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := LoadWithin(exe, nil, 16); err != nil || len(s.funcs) != 0 || s.Read() != 0 || s.gotab != nil {
		t.Errorf("LoadWithin(%s, 16 bytes): %v; read a table over the bound", exe, err)
	}
}

// FuzzParseMaps: any maps text gives mappings with Start < End, 4-letter
// perms, in at most one mapping per line.
func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("55d0c0a1b000-55d0c0a1c000 r-xp 00001000 fd:01 1234 /usr/bin/a\n7ffc1000-7ffc2000 rw-p 00000000 00:00 0 [stack]\n"))
	f.Add([]byte("1-2 rwxp 0 0 0"))
	f.Add([]byte("1-2 rwxp 0 0 0 \n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms := ParseMaps(b)
		if len(ms) > strings.Count(string(b), "\n")+1 {
			t.Fatalf("%d mappings from %d lines", len(ms), strings.Count(string(b), "\n")+1)
		}
		for _, m := range ms {
			if m.Start >= m.End || len(m.Perms) != 4 {
				t.Fatalf("mapping %+v", m)
			}
			find(ms, m.Start)
			m.Exec()
		}
	})
}

// FuzzParseSyscall: any syscall text is running, or a number >= -1 with
// registers, or refused.
func FuzzParseSyscall(f *testing.F) {
	f.Add([]byte("running"))
	f.Add([]byte("230 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffd2f8 0x7f8a1b2c\n"))
	f.Add([]byte("-1 0x1 0x2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := ParseSyscall(b)
		if ok && !s.Running && s.NR < -1 {
			t.Fatalf("ParseSyscall(%q) = %+v", b, s)
		}
		if ok && s.Running && (s.SP != 0 || s.PC != 0) {
			t.Fatalf("running with registers: %+v", s)
		}
	})
}

// FuzzCallBefore: any code bytes are judged without a panic.
func FuzzCallBefore(f *testing.F) {
	f.Add([]byte{0, 0xFF, 0x14, 0x25, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var code [8]byte
		copy(code[:], b)
		callBefore("amd64", code)
		callBefore("arm64", code)
	})
}

// FuzzLoad: any file is a symbol table or an error, never a panic, and a
// table's lookups stay inside it.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/exe"); err == nil && len(b) > 4096 {
		f.Add(b[:4096])
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parse(bytes.NewReader(b), maxSymbolTable)
		if err != nil {
			return
		}
		for _, a := range []uint64{0, 1, 0x1000, ^uint64(0)} {
			if va, ok := s.Vaddr(a); ok {
				s.Lookup(va)
			}
			s.Lookup(a)
		}
	})
}
