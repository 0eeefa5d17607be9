// The signal handler of crashsig_linux_amd64.go. It runs on the thread's
// signal stack with every signal blocked (the runtime's mask), uses only
// raw system calls, and touches no Go state but the variables it was given.

#include "textflag.h"

#define SYS_lseek		8
#define SYS_rt_sigaction	13
#define SYS_rt_sigprocmask	14
#define SYS_getpid		39
#define SYS_exit_group		231
#define SYS_gettid		186
#define SYS_tgkill		234

#define SIGABRT		6
#define SI_TKILL	-6
#define SEEK_CUR	1
#define SIG_UNBLOCK	1

// Locals, below the saved BP.
#define SIG	0(SP)	// the signal
#define INFO	8(SP)	// *siginfo
#define CTX	16(SP)	// *ucontext
#define TID	24(SP)	// this thread's id
#define CLAIMED	32(SP)	// 1 if this call claimed crashClaim
// 40(SP) to 72(SP): a kernel sigaction, or a signal set.

// func crashHandlerPC() uintptr
TEXT ·crashHandlerPC(SB), NOSPLIT, $0-8
	LEAQ	crashHandler<>(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// crashHandler(sig DI, info SI, ctx DX), with the C calling convention.
TEXT crashHandler<>(SB), NOSPLIT|NOFRAME, $0
	PUSHQ	BP
	MOVQ	SP, BP
	SUBQ	$80, SP
	ANDQ	$~15, SP	// the runtime's handler is called as C: 16-byte aligned
	MOVQ	DI, SIG
	MOVQ	SI, INFO
	MOVQ	DX, CTX
	MOVQ	$0, CLAIMED
	MOVL	$SYS_gettid, AX
	SYSCALL
	MOVQ	AX, TID

	CMPQ	SIG, $SIGABRT
	JNE	claim

	// SIGABRT. If this thread claimed a signal, the runtime has printed
	// its report of it and is crashing (traceback level "crash" raises
	// SIGABRT): die by that signal instead.
	MOVQ	·crashClaim(SB), AX
	MOVQ	AX, CX
	SHRQ	$32, CX
	CMPQ	CX, TID
	JNE	notclaimed
	MOVL	AX, AX		// the low half: the claimed signal
	MOVQ	AX, SIG
	JMP	die

notclaimed:
	// If the runtime has written a crash report, this is its crash after
	// a Go panic, a fatal error or a signal from elsewhere: exit 2, as the
	// runtime does without "crash".
	MOVQ	·crashFD(SB), DI
	TESTQ	DI, DI
	JS	claim
	XORQ	SI, SI
	MOVQ	$SEEK_CUR, DX
	MOVL	$SYS_lseek, AX
	SYSCALL
	CMPQ	AX, $0
	JLE	claim
	MOVL	$2, DI
	MOVL	$SYS_exit_group, AX
	SYSCALL

claim:
	// Claim a signal the process raised itself: a fault (si_code > 0), or
	// abort() and raise() (SI_TKILL or SI_USER from our own pid). Another
	// process's signal is not the native code's doing, and is left to the
	// runtime as it was. Only one thread holds the claim at a time.
	MOVQ	INFO, SI
	MOVL	8(SI), AX	// si_code
	CMPL	AX, $0
	JGT	doclaim
	JEQ	ownpid
	CMPL	AX, $SI_TKILL
	JNE	call
ownpid:
	MOVL	$SYS_getpid, AX
	SYSCALL
	MOVQ	INFO, SI
	CMPL	AX, 16(SI)	// si_pid
	JNE	call
doclaim:
	MOVQ	TID, CX
	SHLQ	$32, CX
	ORQ	SIG, CX
	XORQ	AX, AX
	LOCK
	CMPXCHGQ	CX, ·crashClaim(SB)
	JNE	call
	MOVQ	$1, CLAIMED

call:
	MOVQ	SIG, DI
	LEAQ	·goHandlers(SB), AX
	MOVQ	(AX)(DI*8), AX
	MOVQ	INFO, SI
	MOVQ	CTX, DX
	CALL	AX
	// The runtime handled the signal and returned (a fault in Go code
	// became a panic, say): the claim ends here.
	CMPQ	CLAIMED, $0
	JEQ	done
	XORQ	AX, AX
	XCHGQ	AX, ·crashClaim(SB)
done:
	MOVQ	BP, SP
	POPQ	BP
	RET

die:
	// Default action for SIG, unblocked, raised on this thread: the
	// process ends by SIG as if nobody had caught it.
	XORQ	AX, AX
	MOVQ	AX, 40(SP)	// handler SIG_DFL
	MOVQ	AX, 48(SP)	// flags
	MOVQ	AX, 56(SP)	// restorer
	MOVQ	AX, 64(SP)	// mask
	MOVQ	SIG, DI
	LEAQ	40(SP), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVL	$SYS_rt_sigaction, AX
	SYSCALL
	MOVQ	SIG, CX
	DECQ	CX
	MOVQ	$1, AX
	SHLQ	CX, AX
	MOVQ	AX, 40(SP)
	MOVQ	$SIG_UNBLOCK, DI
	LEAQ	40(SP), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	MOVL	$SYS_rt_sigprocmask, AX
	SYSCALL
	MOVL	$SYS_getpid, AX
	SYSCALL
	MOVQ	AX, DI
	MOVQ	TID, SI
	MOVQ	SIG, DX
	MOVL	$SYS_tgkill, AX
	SYSCALL
	// Not reached: SIG's default action ended the process.
	MOVL	$2, DI
	MOVL	$SYS_exit_group, AX
	SYSCALL
	JMP	die
