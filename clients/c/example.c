/* example.c: a C client of `bulkhead serve`. It calls the demo pool's echo,
 * shows a typed error, activates a Counter and calls its add.
 *
 *     go run ./cmd/bulkhead serve --config examples/serve/bulkhead.toml &
 *     cc -std=c99 -o example clients/c/example.c clients/c/bulkhead_client.c
 *     ./example /tmp/bulkhead.sock
 */
#include <inttypes.h>
#include <stdio.h>

#include "bulkhead_client.h"

static int report(const char *what, const bhc_error *err) {
	fprintf(stderr, "%s: %s: %s\n", what, err->kind, err->message);
	return 1;
}

int main(int argc, char **argv) {
	const char *sock = argc > 1 ? argv[1] : "/tmp/bulkhead.sock";
	bhc_error err;
	bhc_client *c = bhc_connect(sock, "example.c", 5000, &err);
	if (c == NULL)
		return report("connect", &err);
	int rc = 1;
	bhc_buf args = {0}, res = {0};
	const char *s;
	size_t n;
	int64_t total, pid;
	uint64_t obj;

	/* A pool call: echo("hello") returns its argument. */
	bhc_put_array(&args, 1);
	bhc_put_str(&args, "hello");
	if (bhc_call(c, "demo", "echo", args.p, args.len, &res, &err) != 0) {
		report("echo", &err);
		goto out;
	}
	if (bhc_result_text(&res, &s, &n) != 0) {
		fprintf(stderr, "echo: the result is not text\n");
		goto out;
	}
	printf("echo: %.*s\n", (int)n, s);

	/* A failure comes back typed: kind, message and the kind's fields. */
	if (bhc_call(c, "demo", "nope", NULL, 0, &res, &err) == 0) {
		fprintf(stderr, "nope: no error\n");
		goto out;
	}
	printf("nope: %s (code %" PRId64 ") in %s: %s\n", err.kind, err.code, err.method, err.message);

	/* An object: a Counter that starts at 10, in the counter server. */
	bhc_buf_reset(&args);
	bhc_put_array(&args, 1);
	bhc_put_int(&args, 10);
	if (bhc_create_instance(c, "Counter", args.p, args.len, &obj, &pid, &err) != 0) {
		report("create_instance", &err);
		goto out;
	}
	printf("Counter: handle %" PRIu64 ", server pid %" PRId64 "\n", obj, pid);
	for (int i = 0; i < 2; i++) {
		bhc_buf_reset(&args);
		bhc_put_array(&args, 1);
		bhc_put_int(&args, 5);
		if (bhc_object_call(c, obj, "add", args.p, args.len, &res, &err) != 0) {
			report("add", &err);
			goto out;
		}
		if (bhc_result_int(&res, &total) != 0) {
			fprintf(stderr, "add: the result is not an integer\n");
			goto out;
		}
		printf("add(5) = %" PRId64 "\n", total);
	}
	if (bhc_release(c, obj, &err) != 0) {
		report("release", &err);
		goto out;
	}
	/* A released handle is gone: using it again is kind not_found. */
	if (bhc_object_call(c, obj, "get", NULL, 0, &res, &err) == 0) {
		fprintf(stderr, "get after release: no error\n");
		goto out;
	}
	printf("get after release: %s\n", err.kind);
	rc = 0;
out:
	bhc_buf_free(&args);
	bhc_buf_free(&res);
	bhc_close(c);
	return rc;
}
