/* bulkhead_client.h: a client of `bulkhead serve` in C, libc only.
 *
 * It speaks docs/CLIENT-PROTOCOL.md over the daemon's Unix socket: calls on
 * the daemon's pools, and objects of its class servers (create_instance,
 * object calls, release, class objects, the running object table), plus the
 * daemon's status and stats. It speaks the socket only: connected to a
 * cluster node's socket (`bulkhead serve --nats`), it calls that node's pools
 * and objects, run by that machine's workers, with no dispatch to the other
 * nodes and no failover when that node goes (only the Go client,
 * client.DialNATS, is a client of the cluster).
 *
 * Build bulkhead_client.c with any C99 compiler on Linux; the header is
 * usable from C++ (extern "C") and through an FFI (the types are plain
 * structs of fixed size, and every function returns 0 or -1).
 *
 *     bhc_error err;
 *     bhc_client *c = bhc_connect("/tmp/bulkhead.sock", "myprog", 5000, &err);
 *     bhc_buf args = {0}, res = {0};
 *     bhc_put_array(&args, 1); bhc_put_str(&args, "hello");
 *     if (bhc_call(c, "demo", "echo", args.p, args.len, &res, &err) != 0)
 *         fprintf(stderr, "%s: %s\n", err.kind, err.message);
 *
 * Arguments go as one CBOR array (the positional arguments) built with the
 * bhc_put_* encoder, or NULL for none; a result comes back as the CBOR bytes
 * of one item, read with bhc_cur or the bhc_result_* helpers.
 *
 * A bhc_client is one connection, and not safe for concurrent use: use one
 * per thread, or a lock. Its requests run one at a time. Everything the
 * daemon sends is checked before use: the frame header (type, flags, length
 * against the daemon's max_frame) before anything is allocated, and each
 * payload against PROTOCOL.md section 5 (one well-formed item, depth 32, no
 * indefinite lengths or tags, valid UTF-8, no duplicate keys). A daemon that
 * breaks the protocol costs the client its connection (kind "protocol"),
 * nothing more. Event subscriptions (section 5.4) are not covered: the
 * daemon's EVENT frames are dropped.
 */
#ifndef BULKHEAD_CLIENT_H
#define BULKHEAD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BHC_PROTOCOL 1

typedef struct bhc_client bhc_client;

/* bhc_error is a failed operation: the ERROR's kind (CLIENT-PROTOCOL.md
 * section 7) and message, and the fields of its kind; a field the ERROR did
 * not carry is 0 or "". Text is NUL-terminated and cut to its array's size.
 * Besides the daemon's kinds, the client's own: "connection" (the daemon
 * cannot be reached or the connection ended: the client is unusable),
 * "timeout" (no answer within the timeout plus a second; the daemon was sent
 * CANCEL and the client stays usable), "protocol" (the daemon broke the
 * protocol: the client is unusable), "usage" (a bad argument to this API,
 * such as args that are not one well-formed CBOR array). */
typedef struct {
	char kind[32];
	char message[512];
	char method[256];
	char reason[256];
	char phase[16];         /* crash: "startup", "call" or "idle" */
	char cause[32];         /* canceled: "deadline" or "canceled"; disconnected: its cause's kind */
	char limit[32];         /* crash: the resource limit ("none", "memory", ...) */
	char class_name[128];   /* disconnected: the object's class */
	char key[128];          /* quarantined */
	char last[256];         /* unhealthy, quarantined: the last failure */
	char stderr_text[1024]; /* crash, start: stderr; canceled: stack */
	int64_t pid, exit_code, signal, code, queued, failures, deaths, replays;
	int64_t waited_ns, since_ns, until_ns;
	uint64_t request_id, object, abandoned_by, args_hash, buffer;
	int core_dumped, killed, started, exited;
} bhc_error;

/* ---- CBOR: writing ------------------------------------------------------ */

/* bhc_buf is a growable buffer; a zero value is empty and ready. A write
 * that cannot be done (out of memory) sets failed and writes nothing more. */
typedef struct {
	uint8_t *p;
	size_t len, cap;
	int failed;
} bhc_buf;

void bhc_buf_reset(bhc_buf *b); /* len = 0, failed = 0; keeps the memory */
void bhc_buf_free(bhc_buf *b);
void bhc_put_uint(bhc_buf *b, uint64_t v);
void bhc_put_int(bhc_buf *b, int64_t v);
void bhc_put_bool(bhc_buf *b, int v);
void bhc_put_null(bhc_buf *b);
void bhc_put_float(bhc_buf *b, double v);
void bhc_put_bytes(bhc_buf *b, const void *p, size_t n);
void bhc_put_text(bhc_buf *b, const char *s, size_t n); /* must be UTF-8 */
void bhc_put_str(bhc_buf *b, const char *s);            /* NUL-terminated */
void bhc_put_array(bhc_buf *b, uint64_t n);             /* then n items */
void bhc_put_map(bhc_buf *b, uint64_t n);               /* then n pairs */
void bhc_put_raw(bhc_buf *b, const void *p, size_t n);  /* encoded CBOR */

/* ---- CBOR: reading ------------------------------------------------------ */

/* Kinds of item, as bhc_kind reports them. */
enum {
	BHC_INVALID = 0,
	BHC_UINT,
	BHC_NEGINT,
	BHC_BYTES,
	BHC_TEXT,
	BHC_ARRAY,
	BHC_MAP,
	BHC_BOOL,
	BHC_NULL,
	BHC_FLOAT
};

/* bhc_cur reads items in sequence from p to end. A read that fails (wrong
 * kind, truncated, out of range) returns -1 and leaves the cursor as it was. */
typedef struct {
	const uint8_t *p, *end;
} bhc_cur;

bhc_cur bhc_cursor(const uint8_t *p, size_t n);
int bhc_kind(const bhc_cur *c);
int bhc_get_uint(bhc_cur *c, uint64_t *v);
int bhc_get_int(bhc_cur *c, int64_t *v); /* major 0 or 1, within int64 */
int bhc_get_bool(bhc_cur *c, int *v);
int bhc_get_null(bhc_cur *c);
int bhc_get_float(bhc_cur *c, double *v);
int bhc_get_bytes(bhc_cur *c, const uint8_t **p, size_t *n);
int bhc_get_text(bhc_cur *c, const char **s, size_t *n); /* not NUL-terminated */
int bhc_get_array(bhc_cur *c, size_t *n); /* then read n items */
int bhc_get_map(bhc_cur *c, size_t *n);   /* then read n key, value pairs */
int bhc_skip(bhc_cur *c);                 /* one whole item */

/* bhc_check reports whether p[0:n] is exactly one item that keeps
 * PROTOCOL.md section 5, nested at `level` (1 for a whole payload): 0, or
 * -1 with the reason in *why (a static string) if why is not NULL. */
int bhc_check(const uint8_t *p, size_t n, int level, const char **why);

/* The result of a call is exactly one integer, or one text string (s points
 * into the buffer, and is not NUL-terminated). */
int bhc_result_int(const bhc_buf *result, int64_t *v);
int bhc_result_text(const bhc_buf *result, const char **s, size_t *n);

/* ---- the connection ----------------------------------------------------- */

/* bhc_connect connects to the daemon's socket and says HELLO, within
 * timeout_ms (0: no limit); name (may be NULL) names the client in the
 * daemon's log. The client's timeout starts as timeout_ms too. It returns
 * NULL with *err set on failure (kinds "connection", "permission_denied",
 * "unsupported_version", "protocol"). */
bhc_client *bhc_connect(const char *socket_path, const char *name, int timeout_ms, bhc_error *err);

/* bhc_set_timeout sets every later request's deadline: it travels on the
 * wire (the daemon abandons the call then, answering kind "canceled"), and
 * the client waits a second more before it gives up (kind "timeout").
 * 0: no deadline (the daemon's max_deadline still bounds every request). */
void bhc_set_timeout(bhc_client *c, int timeout_ms);

/* bhc_close closes the connection: the daemon releases every reference the
 * client held. c may be NULL. */
void bhc_close(bhc_client *c);

/* ---- operations (section 5): 0, or -1 with *err set --------------------- */

/* args: one CBOR array (args_len bytes) of the positional arguments, or
 * NULL. result: reset, then holds the result's CBOR item. */
int bhc_call(bhc_client *c, const char *pool, const char *method, const uint8_t *args, size_t args_len,
             bhc_buf *result, bhc_error *err);

/* Objects. A handle (object, class object) is one reference; bhc_release
 * gives it up, and closing the connection gives up all of them. pid may be
 * NULL. */
int bhc_create_instance(bhc_client *c, const char *class_name, const uint8_t *args, size_t args_len,
                        uint64_t *object, int64_t *pid, bhc_error *err);
int bhc_object_call(bhc_client *c, uint64_t object, const char *method, const uint8_t *args, size_t args_len,
                    bhc_buf *result, bhc_error *err);
int bhc_release(bhc_client *c, uint64_t handle, bhc_error *err);
int bhc_clone(bhc_client *c, uint64_t object, uint64_t *clone, bhc_error *err);
int bhc_get_class_object(bhc_client *c, const char *class_name, uint64_t *class_object, int64_t *pid,
                         bhc_error *err);
int bhc_class_create_instance(bhc_client *c, uint64_t class_object, const uint8_t *args, size_t args_len,
                              uint64_t *object, int64_t *pid, bhc_error *err);
int bhc_lock_server(bhc_client *c, uint64_t class_object, int lock, bhc_error *err);

/* The running object table, shared by every client of the daemon. */
int bhc_rot_register(bhc_client *c, const char *name, uint64_t object, int keep_alive, bhc_error *err);
int bhc_rot_lookup(bhc_client *c, const char *name, uint64_t *object, int64_t *pid, bhc_error *err);
int bhc_rot_revoke(bhc_client *c, const char *name, bhc_error *err);

/* The daemon's status and stats: reply is reset, then holds the REPLY's
 * CBOR map (section 5.5). */
int bhc_status(bhc_client *c, bhc_buf *reply, bhc_error *err);
int bhc_stats(bhc_client *c, bhc_buf *reply, bhc_error *err);

#ifdef __cplusplus
}
#endif
#endif /* BULKHEAD_CLIENT_H */
