package stackscan

import "encoding/binary"

// callBefore reports whether the code bytes that end just before a
// candidate return address end with a call instruction of arch ("amd64",
// "arm64"): what cuts the words of a stack that only happen to point into
// code. code is the 8 bytes before the address.
func callBefore(arch string, code [8]byte) bool {
	switch arch {
	case "amd64":
		return amd64Call(code)
	case "arm64":
		ins := binary.LittleEndian.Uint32(code[4:])
		return ins&0xFC000000 == 0x94000000 || // BL imm26
			ins&0xFFFFFC1F == 0xD63F0000 // BLR Xn
	}
	return false
}

// amd64Call: CALL rel32 (E8 + 4 bytes), or CALL r/m64 (FF /2, with an
// optional REX prefix) whose ModRM, SIB and displacement end at the address.
func amd64Call(code [8]byte) bool {
	if code[3] == 0xE8 {
		return true
	}
	for at := 0; at < 7; at++ {
		op := at
		if code[op]&0xF0 == 0x40 { // REX
			op++
		}
		if op+1 >= len(code) || code[op] != 0xFF {
			continue
		}
		modrm := code[op+1]
		if (modrm>>3)&7 != 2 {
			continue
		}
		if op+2+ffOperandLen(modrm, code, op+2) == len(code) {
			return true
		}
	}
	return false
}

// ffOperandLen is the length of FF's operand after its ModRM byte: a SIB
// byte and a displacement, as the ModRM (and the SIB at code[sib]) say.
func ffOperandLen(modrm byte, code [8]byte, sib int) int {
	mod, rm := modrm>>6, modrm&7
	n := 0
	if mod != 3 && rm == 4 {
		n++ // SIB
	}
	switch {
	case mod == 1:
		n++
	case mod == 2:
		n += 4
	case mod == 0 && rm == 5:
		n += 4 // RIP-relative
	case mod == 0 && rm == 4 && sib < len(code) && code[sib]&7 == 5:
		n += 4 // SIB without a base
	}
	return n
}
