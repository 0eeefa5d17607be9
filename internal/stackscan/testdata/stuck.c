/* stuck: a program whose main thread blocks in sleep(3) from a function of
 * its own (stuck_wait), or spins (stuck_spin), for stackscan's tests. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) static void stuck_wait(void) {
	for (;;) {
		sleep(3600);
	}
}

__attribute__((noinline)) static void stuck_spin(void) {
	volatile unsigned long n = 0;
	for (;;) {
		n++;
	}
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "spin") == 0) {
		stuck_spin();
	}
	stuck_wait();
	return 0;
}
