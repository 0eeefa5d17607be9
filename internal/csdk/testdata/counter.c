//go:build ignore

/* counter: a class server on the C SDK, for internal/csdk's tests.
 *
 * Class "Counter": create([start]) makes a counter at start (default 0);
 * add(n) adds n, emits "changed" [value] and returns the value; get()
 * returns it; live() returns how many counters exist; boom() dereferences
 * NULL. create(-1) fails. With COUNTER_RECYCLE=N in the environment the
 * server revokes its class after N activations (it recycles itself): the
 * dispatcher starts another and this one quits once its objects are gone.
 */
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"

#include <signal.h>
#include <stdlib.h>

static int64_t live, activations, recycle;

static int create(bh_call *c, void *arg, void **state) {
	int64_t start = 0;
	(void)arg;
	if (c->nargs > 0 && bh_arg_int(c, 0, &start) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "Counter takes an integer start");
	}
	if (start < 0) {
		return bh_fail(c, BH_APPLICATION, "negative start %lld", (long long)start);
	}
	int64_t *v = malloc(sizeof *v);
	if (v == NULL) {
		return bh_fail(c, BH_APPLICATION, "out of memory");
	}
	*v = start;
	*state = v;
	live++;
	if (recycle > 0 && ++activations == recycle) {
		bh_revoke();
	}
	return 0;
}

static void destroy(void *state, void *arg) {
	(void)arg;
	free(state);
	live--;
}

static int add(bh_call *c, void *state, void *arg) {
	int64_t *v = state, n;
	bh_buf ev = {0};
	(void)arg;
	if (c->nargs != 1 || bh_arg_int(c, 0, &n) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "add takes an integer");
	}
	*v += n;
	bh_put_array(&ev, 1);
	bh_put_int(&ev, *v);
	if (bh_emit(c->object, "changed", ev.p, ev.len) != 0) {
		bh_buf_free(&ev);
		return bh_fail(c, BH_APPLICATION, "emit failed");
	}
	bh_buf_free(&ev);
	bh_put_int(c->result, *v);
	return 0;
}

static int get(bh_call *c, void *state, void *arg) {
	(void)arg;
	bh_put_int(c->result, *(int64_t *)state);
	return 0;
}

static int boom(bh_call *c, void *state, void *arg) {
	(void)c, (void)state, (void)arg;
	signal(SIGSEGV, SIG_DFL);
	volatile int *volatile p = NULL;
	*p = 1;
	return 0;
}

/* fault dies of a segmentation fault with the SDK's crash handler in place,
   which reports it on stderr (boom resets the handler first: no report). */
static int fault(bh_call *c, void *state, void *arg) {
	(void)c, (void)state, (void)arg;
	volatile int *volatile p = NULL;
	*p = 1;
	return 0;
}

static int live_count(bh_call *c, void *state, void *arg) {
	(void)state, (void)arg;
	bh_put_int(c->result, live);
	return 0;
}

int main(void) {
	static const bh_objmethod methods[] = {
		{"add", add, NULL}, {"get", get, NULL}, {"live", live_count, NULL}, {"boom", boom, NULL},
		{"fault", fault, NULL},
	};
	static const bh_class classes[] = {{"Counter", create, destroy, methods, 5, NULL}};
	if (getenv("COUNTER_RECYCLE") != NULL) {
		recycle = atoll(getenv("COUNTER_RECYCLE"));
	}
	return bh_serve_objects("counter", NULL, 0, classes, 1);
}
