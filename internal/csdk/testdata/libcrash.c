/* libcrash is a shared library whose exported function faults in a static
 * one, for crashlib.c: built unstripped, its .symtab names the static
 * function that glibc's backtrace (which reads only .dynsym) cannot. */
#include <stddef.h>

/* libcrash_store is static: in .symtab only. noinline keeps its frame. */
__attribute__((noinline)) static void libcrash_store(volatile int *p, int v) {
	*p = v;
}

/* libcrash_write stores v at p, in libcrash_store. */
__attribute__((noinline)) void libcrash_write(int *p, int v) {
	libcrash_store(p, v);
	__asm__ volatile("" ::: "memory"); /* no tail call: keep this frame */
}
