/* vectortest.c replays testdata/client-protocol/vectors.txt through the C
 * client (it includes bulkhead_client.c to reach its frame reader). Each
 * vector goes through a socket pair, as from a daemon:
 *
 *   daemon NAME: read by the client's frame reader, printed as
 *     "daemon NAME {json}" (the meaning's format), and an ERROR also as
 *     "error NAME {the bhc_error's fields}";
 *   bad NAME: read by the frame reader, printed as "bad NAME rejected KIND"
 *     or "bad NAME accepted";
 *   client NAME: the API call that sends it is made against the daemon's
 *     answer, written ahead, and what the client wrote is printed as
 *     "client NAME HEX".
 *
 * `go test ./clients/c` compares the output with the vectors. */
#include "bulkhead_client.c"

#include <inttypes.h>

typedef struct {
	char dir[16], name[64];
	uint8_t *frame;
	size_t len;
} vec;

static vec vecs[256];
static size_t nvecs;

static int unhex(const char *s, size_t n, uint8_t *out) {
	for (size_t i = 0; i + 1 < n; i += 2) {
		unsigned v;
		if (sscanf(s + i, "%2x", &v) != 1)
			return -1;
		out[i / 2] = (uint8_t)v;
	}
	return 0;
}

static void load(const char *path) {
	FILE *f = fopen(path, "r");
	static char line[1 << 16];
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	while (fgets(line, sizeof line, f) != NULL && nvecs < 256) {
		char hex[1 << 15];
		vec *v = &vecs[nvecs];
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%15s %63s %32767s", v->dir, v->name, hex) != 3) {
			fprintf(stderr, "bad line: %s", line);
			exit(2);
		}
		v->len = strlen(hex) / 2;
		v->frame = (uint8_t *)malloc(v->len + 1);
		if (v->frame == NULL || unhex(hex, strlen(hex), v->frame) != 0) {
			fprintf(stderr, "bad hex: %s", line);
			exit(2);
		}
		nvecs++;
	}
	fclose(f);
}

static const vec *find(const char *dir, const char *name) {
	for (size_t i = 0; i < nvecs; i++)
		if (strcmp(vecs[i].dir, dir) == 0 && strcmp(vecs[i].name, name) == 0)
			return &vecs[i];
	fprintf(stderr, "no vector %s %s\n", dir, name);
	exit(2);
}

/* json prints one item (checked before) as the vectors' JSON. */
static void json(bhc_cur *c) {
	uint64_t u;
	int64_t i;
	int b;
	double d;
	const char *s = "";
	const uint8_t *p = NULL;
	size_t n = 0;
	switch (bhc_kind(c)) {
	case BHC_UINT: bhc_get_uint(c, &u), printf("%" PRIu64, u); return;
	case BHC_NEGINT:
		if (bhc_get_int(c, &i) == 0) {
			printf("%" PRId64, i);
		} else { /* below -2^63: -1 - arg, in decimal digits */
			head h;
			char d[24];
			int k = 23;
			get(c, 1, &h);
			d[k] = 0;
			int carry = 1;
			for (uint64_t a = h.arg; a > 0 || carry; a /= 10) {
				int digit = (int)(a % 10) + carry;
				carry = digit == 10;
				d[--k] = (char)('0' + digit % 10);
				if (a < 10 && !carry)
					break;
			}
			printf("-%s", d + k);
		}
		return;
	case BHC_BYTES:
		bhc_get_bytes(c, &p, &n);
		printf("{\"$bytes\":\"");
		for (size_t k = 0; k < n; k++)
			printf("%02x", p[k]);
		printf("\"}");
		return;
	case BHC_TEXT:
		bhc_get_text(c, &s, &n);
		putchar('"');
		for (size_t k = 0; k < n; k++) {
			unsigned char ch = (unsigned char)s[k];
			if (ch == '"' || ch == '\\')
				printf("\\%c", ch);
			else if (ch < 0x20)
				printf("\\u%04x", ch);
			else
				putchar(ch);
		}
		putchar('"');
		return;
	case BHC_ARRAY:
		bhc_get_array(c, &n);
		putchar('[');
		for (size_t k = 0; k < n; k++) {
			if (k)
				putchar(',');
			json(c);
		}
		putchar(']');
		return;
	case BHC_MAP:
		bhc_get_map(c, &n);
		putchar('{');
		for (size_t k = 0; k < n; k++) {
			if (k)
				putchar(',');
			if (bhc_kind(c) == BHC_TEXT) {
				json(c);
			} else {
				putchar('"'), json(c), putchar('"');
			}
			putchar(':');
			json(c);
		}
		putchar('}');
		return;
	case BHC_BOOL: bhc_get_bool(c, &b), printf(b ? "true" : "false"); return;
	case BHC_NULL: bhc_get_null(c), printf("null"); return;
	case BHC_FLOAT: bhc_get_float(c, &d), printf("%.17g", d); return;
	}
	printf("INVALID");
	bhc_skip(c);
}

/* fake is a client on one end of a socket pair; *peer is the daemon's end. */
static bhc_client *fake(int *peer) {
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("socketpair");
		exit(2);
	}
	bhc_client *c = (bhc_client *)calloc(1, sizeof *c);
	c->fd = sv[0], c->max_frame = 16u << 20;
	*peer = sv[1];
	return c;
}

static void feed(int peer, const vec *v) {
	if (write_all(peer, v->frame, v->len, 0) != 0) {
		perror("write");
		exit(2);
	}
}

static const char *type_name(uint8_t t) {
	static const char *names[] = {"", "HELLO", "REQUEST", "REPLY", "ERROR", "CANCEL", "", "PING", "PONG"};
	return t == T_EVENT ? "EVENT" : t < 9 ? names[t] : "?";
}

static void print_error(const char *name, const bhc_error *e) {
	printf("error %s {\"kind\":\"%s\",\"pid\":%" PRId64 ",\"exit_code\":%" PRId64 ",\"signal\":%" PRId64
	       ",\"code\":%" PRId64 ",\"request_id\":%" PRIu64 ",\"object\":%" PRIu64 ",\"args_hash\":%" PRIu64
	       ",\"until_ns\":%" PRId64 ",\"waited_ns\":%" PRId64 ",\"core_dumped\":%s,\"started\":%s,\"buffer\":%" PRIu64
	       ",\"abandoned_by\":%" PRIu64 ",\"queued\":%" PRId64 ",\"deaths\":%" PRId64 ",\"replays\":%" PRId64
	       ",\"killed\":%s,\"exited\":%s,\"since_ns\":%" PRId64 ",\"failures\":%" PRId64,
	       name, e->kind, e->pid, e->exit_code, e->signal, e->code, e->request_id, e->object, e->args_hash,
	       e->until_ns, e->waited_ns, e->core_dumped ? "true" : "false", e->started ? "true" : "false",
	       e->buffer, e->abandoned_by, e->queued, e->deaths, e->replays, e->killed ? "true" : "false",
	       e->exited ? "true" : "false", e->since_ns, e->failures);
	const char *texts[][2] = {{"message", e->message}, {"method", e->method}, {"reason", e->reason},
	                          {"phase", e->phase}, {"cause", e->cause}, {"limit", e->limit},
	                          {"class", e->class_name}, {"last", e->last}, {"stderr", e->stderr_text},
	                          {"key", e->key}};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		bhc_buf b = {0};
		bhc_put_str(&b, texts[i][1]);
		bhc_cur c = bhc_cursor(b.p, b.len);
		printf(",\"%s\":", texts[i][0]);
		json(&c);
		bhc_buf_free(&b);
	}
	printf("}\n");
}

/* from_daemon reads vector v through the frame reader. */
static void from_daemon(const vec *v) {
	int peer;
	bhc_client *c = fake(&peer);
	bhc_error err;
	header h;
	feed(peer, v);
	close(peer);
	int rc = read_frame(c, now_ms() + 5000, &h, &err);
	if (strcmp(v->dir, "bad") == 0) {
		printf("bad %s %s %s\n", v->name, rc == 0 ? "accepted" : "rejected", rc == 0 ? "" : err.kind);
	} else if (rc != 0) {
		printf("daemon %s FAILED %s: %s\n", v->name, err.kind, err.message);
	} else {
		printf("daemon %s {\"type\":\"%s\",\"id\":%" PRIu64, v->name, type_name(h.type), h.id);
		if (c->in.len > 0) {
			bhc_cur cur = bhc_cursor(c->in.p, c->in.len);
			printf(",\"payload\":");
			json(&cur);
		}
		printf("}\n");
		if (h.type == T_ERROR) {
			decode_error(c->in.p, c->in.len, &err);
			print_error(v->name, &err);
		}
	}
	bhc_close(c);
}

/* sent prints what the client wrote to peer. */
static void sent(const char *name, int peer) {
	uint8_t buf[4096];
	ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
	printf("client %s ", name);
	for (ssize_t i = 0; i < n; i++)
		printf("%02x", buf[i]);
	printf("\n");
}

static bhc_buf args1(int64_t v, const char *s) {
	bhc_buf b = {0};
	bhc_put_array(&b, 1);
	if (s)
		bhc_put_str(&b, s);
	else
		bhc_put_int(&b, v);
	return b;
}

/* to_daemon makes the API call that sends client vector `name` (request
 * id n), against the daemon's answer `reply`, and prints what it sent. */
static void to_daemon(const char *name, const char *reply, uint64_t n) {
	int peer;
	bhc_client *c = fake(&peer);
	bhc_error err;
	bhc_buf a = {0}, res = {0};
	uint64_t h = 0;
	int64_t pid = 0;
	int rc = -1;
	c->next_id = n - 1;
	if (reply != NULL)
		feed(peer, find("daemon", reply));
	if (strcmp(name, "hello") == 0 || strcmp(name, "hello.anonymous") == 0) {
		int fd = c->fd;
		free(c);
		c = handshake(fd, name[5] ? NULL : "example", 0, &err);
		rc = c ? 0 : -1;
	} else if (strcmp(name, "request.call") == 0) {
		a = args1(0, "hi");
		rc = bhc_call(c, "demo", "echo", a.p, a.len, &res, &err);
	} else if (strcmp(name, "request.call.noargs") == 0) {
		rc = bhc_call(c, "demo", "ping", NULL, 0, &res, &err);
	} else if (strcmp(name, "request.create_instance") == 0) {
		a = args1(10, NULL);
		rc = bhc_create_instance(c, "Counter", a.p, a.len, &h, &pid, &err);
	} else if (strcmp(name, "request.get_class_object") == 0) {
		rc = bhc_get_class_object(c, "Counter", &h, &pid, &err);
	} else if (strcmp(name, "request.class_create_instance") == 0) {
		rc = bhc_class_create_instance(c, 2, NULL, 0, &h, &pid, &err);
	} else if (strcmp(name, "request.lock_server") == 0) {
		rc = bhc_lock_server(c, 2, 1, &err);
	} else if (strcmp(name, "request.object_call") == 0) {
		a = args1(5, NULL);
		rc = bhc_object_call(c, 1, "add", a.p, a.len, &res, &err);
	} else if (strcmp(name, "request.clone") == 0) {
		rc = bhc_clone(c, 1, &h, &err);
	} else if (strcmp(name, "request.release") == 0) {
		rc = bhc_release(c, 4, &err);
	} else if (strcmp(name, "request.rot_register") == 0) {
		rc = bhc_rot_register(c, "counters/main", 1, 1, &err);
	} else if (strcmp(name, "request.rot_lookup") == 0) {
		rc = bhc_rot_lookup(c, "counters/main", &h, &pid, &err);
	} else if (strcmp(name, "request.rot_revoke") == 0) {
		rc = bhc_rot_revoke(c, "counters/main", &err);
	} else if (strcmp(name, "request.status") == 0) {
		rc = bhc_status(c, &res, &err);
	} else if (strcmp(name, "request.stats") == 0) {
		rc = bhc_stats(c, &res, &err);
	}
	if (rc != 0) {
		printf("client %s FAILED %s: %s\n", name, err.kind, err.message);
	} else {
		sent(name, peer);
		bhc_cur cur = bhc_cursor(res.p, res.len);
		printf("answer %s {\"handle\":%" PRIu64 ",\"pid\":%" PRId64 ",\"result\":", name, h, pid);
		if (res.len > 0)
			json(&cur);
		else
			printf("null");
		printf("}\n");
	}
	close(peer);
	bhc_buf_free(&a);
	bhc_buf_free(&res);
	bhc_close(c);
}

/* timeout checks a request the daemon does not answer in time: kind
 * "timeout", CANCEL sent for it, and the client still usable: the late
 * answer is dropped and the next request gets its own. */
static void timeout(void) {
	int peer;
	bhc_client *c = fake(&peer);
	bhc_error err;
	bhc_buf res = {0};
	uint8_t buf[512], cancel[HEADER] = {0}, next[64];
	const vec *late = find("daemon", "reply.call"); /* id 1, result "hi" */
	c->timeout_ms = 20, c->grace_ms = 0;
	int rc = bhc_call(c, "demo", "ping", NULL, 0, &res, &err);
	char kind[32];
	memcpy(kind, err.kind, sizeof kind);
	ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
	cancel[4] = T_CANCEL, cancel[8] = 1;
	int sent = n > 2 * HEADER && memcmp(buf + n - HEADER, cancel, HEADER) == 0;
	memcpy(next, late->frame, late->len);
	next[8] = 2; /* the same answer, for request 2 */
	feed(peer, late);
	write_all(peer, next, late->len, 0);
	c->timeout_ms = 0;
	int rc2 = bhc_call(c, "demo", "echo", NULL, 0, &res, &err);
	const char *s = "";
	size_t sn = 0;
	if (rc2 != 0 || bhc_result_text(&res, &s, &sn) != 0)
		s = "FAILED", sn = 6;
	printf("timeout call {\"rc\":%d,\"kind\":\"%s\",\"cancel_sent\":%s,\"then\":\"%.*s\"}\n", rc, kind,
	       sent ? "true" : "false", (int)sn, s);
	close(peer);
	bhc_buf_free(&res);
	bhc_close(c);
}

int main(int argc, char **argv) {
	static const struct {
		const char *name, *reply;
		uint64_t id;
	} conv[] = {
		{"hello", "hello", 0}, {"hello.anonymous", "hello", 0}, {"request.call", "reply.call", 1},
		{"request.call.noargs", "reply.call.null", 3}, {"request.create_instance", "reply.create_instance", 4},
		{"request.get_class_object", "reply.get_class_object", 5},
		{"request.class_create_instance", "reply.class_create_instance", 6},
		{"request.lock_server", "reply.lock_server", 7}, {"request.object_call", "reply.object_call", 8},
		{"request.clone", "reply.clone", 9}, {"request.release", NULL, 10},
		{"request.rot_register", "reply.rot_register", 11}, {"request.rot_lookup", "reply.rot_lookup", 12},
		{"request.rot_revoke", "reply.rot_revoke", 13}, {"request.status", "reply.status", 15},
		{"request.stats", "reply.stats", 16},
	};
	if (argc != 2) {
		fprintf(stderr, "usage: vectortest VECTORS\n");
		return 2;
	}
	load(argv[1]);
	for (size_t i = 0; i < nvecs; i++)
		if (strcmp(vecs[i].dir, "client") != 0)
			from_daemon(&vecs[i]);
	for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++)
		to_daemon(conv[i].name, conv[i].reply, conv[i].id);
	timeout();
	for (size_t i = 0; i < nvecs; i++)
		free(vecs[i].frame);
	return 0;
}
