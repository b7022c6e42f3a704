// Why this exists: a file thread answering a ~4 kB file to a fleet spends most of its own CPU in Node's
// stream machinery around each read and write (a 64 KiB buffer allocated and copied per read, a tick
// scheduled per write, JavaScript called twice per answer), not in the kernel or in Bulwark
// (docs/benchmarks.md, "Where the 4 kB answer's CPU goes"). This module takes the agents' connections
// of a thread on its own libuv poll handles and answers, with one read and one sendmsg, the requests
// whose exact head bytes it has been told the answer to. It parses nothing: every head it has not
// been told about is shown to JavaScript (agent-front.ts), which reads it as the fast path does and
// either gives the answer (kept here for the next time the same bytes come) or takes the connection,
// with its unread bytes, for the rest of its life (the fast path, then node:http).
//
// It runs on the thread's own event loop (napi_get_uv_event_loop): no thread of its own, no lock.
//
//   createFront({ keepAliveMs, headersTimeoutMs, onHead, onHandOver }) -> front   (timeouts: 0 is none)
//     onHead(head: Buffer) -> undefined | [status: Buffer, rest: Buffer, body: Buffer | null]
//       `head` is a request's head with its empty line; the answer is written as
//       status + "date: ...\r\nconnection: keep-alive\r\nkeep-alive: timeout=N\r\n" + rest + body.
//     onHandOver(fd: number, unread: Buffer) -> true once JavaScript owns `fd` (else it is closed here).
//   listen(front, host, port, backlog)   SO_REUSEPORT; "::" takes IPv4 too. Throws with errno's code.
//   forget(front)                        every answer kept is dropped (the cache changed)
//   answered(front) -> number            answers written here since the last call
//   connections(front) -> number         connections held here
//   close(front)                         listening sockets and connections closed
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/** Bytes read at once; a head not ended within one read is JavaScript's (as on the fast path). */
#define READ_BYTES (64 * 1024)
/** Heads longer than this are shown to JavaScript each time, never kept (an agent's is about 150 bytes). */
#define MAX_KEPT_HEAD 512
/** Heads kept with their answers (at most 128 kB of heads), all forgotten when full. */
#define MAX_HEADS 256
#define SLOTS 1024
#define MAX_LISTENERS 16
/** Connections accepted per listening socket per turn of the loop (libuv's own accepts one). */
#define ACCEPTS_PER_TURN 64
/** Out of file descriptors: accepting waits this long. */
#define ACCEPT_PAUSE_MS 100

typedef struct answer {
  int refs;
  char* head;  // the status line, then "\0", then the rest of the head (the fields and the empty line)
  size_t status_len, rest_len;
  const char* body;
  size_t body_len;
  napi_ref body_ref;
} answer;

typedef struct slot {
  uint64_t hash;
  char* bytes;
  size_t len;
  answer* answer;
} slot;

struct front;

typedef struct conn {
  uv_poll_t poll;
  struct front* front;
  struct conn *prev, *next;
  int fd;
  bool closing;
  uint64_t deadline;
  // An answer the socket could not take at once: written as it drains, the connection not read meanwhile.
  answer* pending;
  size_t pending_at;
  char shared[160];
  size_t shared_len;
  // Requests read after the pending answer's, served once it is written.
  char* unread;
  size_t unread_len;
} conn;

typedef struct listener {
  uv_poll_t poll;
  struct front* front;
  int fd;
} listener;

typedef struct front {
  napi_env env;
  uv_loop_t* loop;
  napi_ref on_head, on_hand_over;
  napi_async_context async;
  napi_async_cleanup_hook_handle cleanup;
  listener listeners[MAX_LISTENERS];
  int listening;
  conn* conns;
  int connections;
  uv_timer_t timer;
  bool timer_open;
  int open_handles;
  bool closed;
  bool collected;
  slot slots[SLOTS];
  int heads;
  /** Counts forget_all()s: an answer JavaScript gave before one (in the same callback's ticks) is not kept. */
  uint64_t generation;
  char* readbuf;
  uint64_t keep_alive_ms, headers_timeout_ms;
  double answered;
  char shared[160];
  size_t shared_len;
  time_t shared_second;
  bool paused;
} front;

static void close_conn(conn* c);
static void serve(conn* c, const char* data, size_t len);

// ---- answers and the heads they are kept under ----

static void answer_release(front* f, answer* a) {
  if (!a || --a->refs > 0) return;
  if (a->body_ref) napi_delete_reference(f->env, a->body_ref);
  free(a->head);
  free(a);
}

static uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

static answer* lookup(front* f, const char* head, size_t len, uint64_t hash) {
  for (size_t i = hash % SLOTS, n = 0; n < SLOTS; i = (i + 1) % SLOTS, n++) {
    slot* s = &f->slots[i];
    if (!s->bytes) return NULL;
    if (s->hash == hash && s->len == len && memcmp(s->bytes, head, len) == 0) return s->answer;
  }
  return NULL;
}

static void forget_all(front* f) {
  for (int i = 0; i < SLOTS; i++) {
    slot* s = &f->slots[i];
    if (!s->bytes) continue;
    free(s->bytes);
    answer_release(f, s->answer);
    memset(s, 0, sizeof *s);
  }
  f->heads = 0;
  f->generation++;
}

static void keep(front* f, const char* head, size_t len, uint64_t hash, answer* a) {
  if (len > MAX_KEPT_HEAD) return;
  if (f->heads >= MAX_HEADS) forget_all(f);
  char* bytes = malloc(len);
  if (!bytes) return;
  memcpy(bytes, head, len);
  size_t i = hash % SLOTS;
  while (f->slots[i].bytes) i = (i + 1) % SLOTS;
  f->slots[i] = (slot){hash, bytes, len, a};
  a->refs++;
  f->heads++;
}

// ---- calling JavaScript ----

// Calls `fn` as a callback from the event loop (ticks and microtasks run after it, as after any I/O
// callback). An exception thrown by it is the thread's uncaught exception.
static napi_value call_js(front* f, napi_ref fn, size_t argc, napi_value* argv) {
  napi_value func, recv, result = NULL;
  if (napi_get_reference_value(f->env, fn, &func) != napi_ok || napi_get_global(f->env, &recv) != napi_ok) return NULL;
  if (napi_make_callback(f->env, f->async, recv, func, argc, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(f->env, &pending);
    if (pending) {
      napi_value error;
      napi_get_and_clear_last_exception(f->env, &error);
      napi_fatal_exception(f->env, error);
    }
    return NULL;
  }
  return result;
}

static bool buffer_of(napi_env env, napi_value value, char** data, size_t* len) {
  bool is = false;
  return napi_is_buffer(env, value, &is) == napi_ok && is && napi_get_buffer_info(env, value, (void**)data, len) == napi_ok;
}

// Shows a head to JavaScript: the answer it gives (kept under those bytes), or NULL to hand the connection
// over; NULL with *failed set where JavaScript could not be asked or threw (the connection is then closed).
static answer* ask(front* f, const char* head, size_t len, uint64_t hash, bool* failed) {
  napi_handle_scope scope;
  *failed = true;
  if (napi_open_handle_scope(f->env, &scope) != napi_ok) return NULL;
  answer* a = NULL;
  uint64_t generation = f->generation;
  napi_value arg, result, status, rest, body;
  bool is_array = false;
  uint32_t length = 0;
  char *status_data, *rest_data, *body_data = NULL;
  size_t status_len, rest_len, body_len = 0;
  napi_valuetype body_type = napi_null;
  if (napi_create_buffer_copy(f->env, len, head, NULL, &arg) != napi_ok) goto done;
  result = call_js(f, f->on_head, 1, &arg);
  if (!result) goto done;
  *failed = false;
  if (napi_is_array(f->env, result, &is_array) != napi_ok || !is_array) goto done;
  if (napi_get_array_length(f->env, result, &length) != napi_ok || length != 3) goto done;
  if (napi_get_element(f->env, result, 0, &status) != napi_ok || napi_get_element(f->env, result, 1, &rest) != napi_ok ||
      napi_get_element(f->env, result, 2, &body) != napi_ok || napi_typeof(f->env, body, &body_type) != napi_ok)
    goto done;
  if (!buffer_of(f->env, status, &status_data, &status_len) || !buffer_of(f->env, rest, &rest_data, &rest_len)) goto done;
  if (body_type != napi_null && !buffer_of(f->env, body, &body_data, &body_len)) goto done;
  a = calloc(1, sizeof *a);
  if (!a || !(a->head = malloc(status_len + 1 + rest_len))) {
    free(a);
    a = NULL;
    goto done;
  }
  memcpy(a->head, status_data, status_len);
  a->head[status_len] = 0;
  memcpy(a->head + status_len + 1, rest_data, rest_len);
  a->status_len = status_len;
  a->rest_len = rest_len;
  // The body is JavaScript's Buffer, held by a reference (a 2 MB file is not copied per thread).
  if (body_data && body_len) {
    if (napi_create_reference(f->env, body, 1, &a->body_ref) != napi_ok) {
      // Never an answer whose fields promise a body it does not have: JavaScript answers this one.
      free(a->head);
      free(a);
      a = NULL;
      goto done;
    }
    a->body = body_data;
    a->body_len = body_len;
  }
  a->refs = 1;
  // Not kept if the cache changed while JavaScript ran (its ticks too): the answer may be older than that.
  if (!f->closed && f->generation == generation) keep(f, head, len, hash, a);
done:
  napi_close_handle_scope(f->env, scope);
  return a;
}

// ---- writing answers ----

static const char* const DAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char* const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/** The lines every answer shares, as node:http writes them (and the fast path): the date changes each second. */
static void shared_lines(front* f) {
  time_t now = time(NULL);
  if (now == f->shared_second) return;
  struct tm t;
  gmtime_r(&now, &t);
  int n = snprintf(f->shared, sizeof f->shared, "date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\nconnection: keep-alive\r\nkeep-alive: timeout=%llu\r\n",
                   DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon], t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec,
                   (unsigned long long)(f->keep_alive_ms / 1000));
  f->shared_len = n > 0 && (size_t)n < sizeof f->shared ? (size_t)n : 0;
  f->shared_second = now;
}

// Writes what is left of `a` from `at` (of status, shared lines, rest, body): bytes written, or -1.
static ssize_t write_from(conn* c, answer* a, const char* shared, size_t shared_len, size_t at) {
  struct iovec iov[4] = {
      {a->head, a->status_len}, {(void*)shared, shared_len}, {a->head + a->status_len + 1, a->rest_len}, {(void*)a->body, a->body_len}};
  int first = 0;
  while (first < 4 && at >= iov[first].iov_len) at -= iov[first++].iov_len;
  if (first == 4) return 0;
  iov[first].iov_base = (char*)iov[first].iov_base + at;
  iov[first].iov_len -= at;
  struct msghdr msg = {.msg_iov = iov + first, .msg_iovlen = 4 - first};
  for (;;) {
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

static size_t answer_len(answer* a, size_t shared_len) {
  return a->status_len + shared_len + a->rest_len + a->body_len;
}

static void on_conn(uv_poll_t* poll, int status, int events);

// 1: written whole; 0: the rest waits for the socket to drain; -1: the connection failed.
static int write_answer(conn* c, answer* a) {
  front* f = c->front;
  shared_lines(f);
  ssize_t n = write_from(c, a, f->shared, f->shared_len, 0);
  if (n < 0) return -1;
  if ((size_t)n == answer_len(a, f->shared_len)) return 1;
  a->refs++;
  c->pending = a;
  c->pending_at = (size_t)n;
  memcpy(c->shared, f->shared, f->shared_len);
  c->shared_len = f->shared_len;
  uv_poll_start(&c->poll, UV_WRITABLE, on_conn);
  return 0;
}

// ---- connections ----

static void on_conn_closed(uv_handle_t* handle);

static void unlink_conn(conn* c) {
  front* f = c->front;
  if (c->prev) c->prev->next = c->next;
  else f->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  f->connections--;
}

static void close_conn(conn* c) {
  if (c->closing) return;
  c->closing = true;
  unlink_conn(c);
  uv_close((uv_handle_t*)&c->poll, on_conn_closed);
}

// The connection becomes JavaScript's, with the bytes read and not answered.
static void hand_over(conn* c, const char* unread, size_t len) {
  front* f = c->front;
  int fd = c->fd;
  // Closing the poll handle takes the descriptor out of the loop at once, so that a net.Socket can open it.
  c->fd = -1;
  close_conn(c);
  napi_handle_scope scope;
  if (napi_open_handle_scope(f->env, &scope) != napi_ok) {
    close(fd);
    return;
  }
  napi_value argv[2], result;
  bool owned = false;
  // Closed here unless JavaScript says it owns the descriptor now (it may not run at all as the thread ends).
  if (napi_create_int32(f->env, fd, &argv[0]) == napi_ok && napi_create_buffer_copy(f->env, len, len ? unread : "", NULL, &argv[1]) == napi_ok &&
      (result = call_js(f, f->on_hand_over, 2, argv)) != NULL && napi_get_value_bool(f->env, result, &owned) != napi_ok)
    owned = false;
  if (!owned) close(fd);
  napi_close_handle_scope(f->env, scope);
}

static uint64_t now_ms(front* f) {
  return uv_now(f->loop);
}

/** A deadline `ms` from now; none for 0 (as node:http's timeouts). */
static uint64_t deadline_after(front* f, uint64_t ms) {
  return ms ? now_ms(f) + ms : UINT64_MAX;
}

// Answers the requests in `data` that are known (or that JavaScript answers), in order; hands the
// connection over at the first it does not answer, and keeps the rest while an answer waits to be written.
static void serve(conn* c, const char* data, size_t len) {
  front* f = c->front;
  size_t at = 0;
  while (at < len) {
    const char* end = memmem(data + at, len - at, "\r\n\r\n", 4);
    if (!end) break;
    size_t head_len = (size_t)(end - (data + at)) + 4;
    uint64_t hash = hash_bytes(data + at, head_len);
    answer* a = lookup(f, data + at, head_len, hash);
    if (a) a->refs++;
    else {
      bool failed;
      a = ask(f, data + at, head_len, hash, &failed);
      // JavaScript may have closed this front, or the thread, meanwhile.
      if (c->closing || failed) {
        answer_release(f, a);
        close_conn(c);
        return;
      }
      if (!a) break;
    }
    at += head_len;
    f->answered++;
    c->deadline = deadline_after(f, f->keep_alive_ms);
    int written = write_answer(c, a);
    answer_release(f, a);
    if (written < 0) {
      close_conn(c);
      return;
    }
    if (written == 0) {
      if (at < len) {
        c->unread = malloc(len - at);
        if (!c->unread) {
          close_conn(c);
          return;
        }
        memcpy(c->unread, data + at, len - at);
        c->unread_len = len - at;
      }
      return;
    }
  }
  if (at < len) hand_over(c, data + at, len - at);
}

static void on_conn(uv_poll_t* poll, int status, int events) {
  conn* c = poll->data;
  front* f = c->front;
  if (c->closing) return;
  if (status < 0) {
    close_conn(c);
    return;
  }
  if (c->pending) {
    if (!(events & UV_WRITABLE)) return;
    ssize_t n = write_from(c, c->pending, c->shared, c->shared_len, c->pending_at);
    if (n < 0) {
      close_conn(c);
      return;
    }
    c->pending_at += (size_t)n;
    if (n > 0) c->deadline = deadline_after(f, f->keep_alive_ms);
    if (c->pending_at < answer_len(c->pending, c->shared_len)) return;
    answer_release(f, c->pending);
    c->pending = NULL;
    uv_poll_start(&c->poll, UV_READABLE, on_conn);
    if (c->unread) {
      char* unread = c->unread;
      size_t unread_len = c->unread_len;
      c->unread = NULL;
      c->unread_len = 0;
      serve(c, unread, unread_len);
      free(unread);
    }
    return;
  }
  if (!(events & UV_READABLE)) return;
  ssize_t n;
  do n = read(c->fd, f->readbuf, READ_BYTES);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  // The agent ended its side (every answer to it is written: it is not read while one waits) or failed.
  if (n <= 0) {
    close_conn(c);
    return;
  }
  serve(c, f->readbuf, (size_t)n);
}

static void maybe_free(front* f);

static void on_conn_closed(uv_handle_t* handle) {
  conn* c = handle->data;
  front* f = c->front;
  if (c->fd >= 0) close(c->fd);
  answer_release(f, c->pending);
  free(c->unread);
  free(c);
  f->open_handles--;
  maybe_free(f);
}

// ---- listening ----

static void on_accept(uv_poll_t* poll, int status, int events);

static void on_timer(uv_timer_t* timer) {
  front* f = timer->data;
  if (f->paused) {
    f->paused = false;
    for (int i = 0; i < f->listening; i++) uv_poll_start(&f->listeners[i].poll, UV_READABLE, on_accept);
  }
  // Connections idle past their deadline: the head's time before the first answer, keep-alive's after.
  uint64_t now = now_ms(f);
  for (conn *c = f->conns, *next; c; c = next) {
    next = c->next;
    if (c->deadline <= now) close_conn(c);
  }
}

// Accepting stops for ACCEPT_PAUSE_MS, then the timer polls the listening sockets again.
static void pause_accepting(front* f) {
  f->paused = true;
  for (int j = 0; j < f->listening; j++) uv_poll_stop(&f->listeners[j].poll);
  uv_timer_start(&f->timer, on_timer, ACCEPT_PAUSE_MS, 1000);
}

static void on_accept(uv_poll_t* poll, int status, int events) {
  listener* l = poll->data;
  front* f = l->front;
  if (f->closed) return;
  // libuv stopped this handle: poll it again after a pause, or the kernel's queue for it would wait for good.
  if (status < 0) {
    pause_accepting(f);
    return;
  }
  for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The connection waits in the queue: accepting again at once would spin.
        pause_accepting(f);
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn* c = calloc(1, sizeof *c);
    if (!c || uv_poll_init(f->loop, &c->poll, fd) != 0) {
      free(c);
      close(fd);
      continue;
    }
    c->poll.data = c;
    c->front = f;
    c->fd = fd;
    c->deadline = deadline_after(f, f->headers_timeout_ms);
    c->next = f->conns;
    if (f->conns) f->conns->prev = c;
    f->conns = c;
    f->connections++;
    f->open_handles++;
    uv_poll_start(&c->poll, UV_READABLE, on_conn);
  }
}

// ---- the front's life ----

static void on_listener_closed(uv_handle_t* handle) {
  listener* l = handle->data;
  close(l->fd);
  l->front->open_handles--;
  maybe_free(l->front);
}

static void on_timer_closed(uv_handle_t* handle) {
  front* f = handle->data;
  f->open_handles--;
  maybe_free(f);
}

static void close_front(front* f) {
  if (f->closed) return;
  f->closed = true;
  for (int i = 0; i < f->listening; i++) uv_close((uv_handle_t*)&f->listeners[i].poll, on_listener_closed);
  while (f->conns) close_conn(f->conns);
  if (f->timer_open) uv_close((uv_handle_t*)&f->timer, on_timer_closed);
  forget_all(f);
  maybe_free(f);
}

// Frees the front once closed, its handles' close callbacks run, and JavaScript has let go of it (or the thread ends).
static void maybe_free(front* f) {
  if (!f->closed || f->open_handles > 0) return;
  if (f->cleanup) {
    napi_async_cleanup_hook_handle cleanup = f->cleanup;
    f->cleanup = NULL;
    napi_remove_async_cleanup_hook(cleanup);
  }
  if (!f->collected) return;
  if (f->on_head) napi_delete_reference(f->env, f->on_head);
  if (f->on_hand_over) napi_delete_reference(f->env, f->on_hand_over);
  if (f->async) napi_async_destroy(f->env, f->async);
  free(f->readbuf);
  free(f);
}

// The thread ends: its loop must hold no handle of ours once this hook is done.
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void* data) {
  front* f = data;
  (void)handle;
  // Freed by the wrapper's finalizer, which Node-API runs as the thread's environment goes, after this hook.
  close_front(f);
}

static void on_collected(napi_env env, void* data, void* hint) {
  front* f = data;
  (void)env;
  (void)hint;
  f->collected = true;
  close_front(f);
  maybe_free(f);
}

// ---- JavaScript's side ----

static napi_value fail(napi_env env, const char* code, const char* message) {
  napi_value error, code_value, message_value;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) == napi_ok && napi_create_error(env, NULL, message_value, &error) == napi_ok) {
    if (code && napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) == napi_ok) napi_set_named_property(env, error, "code", code_value);
    napi_throw(env, error);
  }
  return NULL;
}

static front* front_of(napi_env env, napi_value value) {
  front* f = NULL;
  if (napi_unwrap(env, value, (void**)&f) != napi_ok || !f) fail(env, "ERR_INVALID_ARG_TYPE", "not a front");
  return f;
}

static bool number_property(napi_env env, napi_value object, const char* name, double* out) {
  napi_value value;
  napi_valuetype type;
  // Whole milliseconds up to node's own timer limit (about 24.8 days).
  return napi_get_named_property(env, object, name, &value) == napi_ok && napi_typeof(env, value, &type) == napi_ok && type == napi_number &&
         napi_get_value_double(env, value, out) == napi_ok && *out >= 0 && *out <= 2147483647.0;
}

static bool function_property(napi_env env, napi_value object, const char* name, napi_ref* out) {
  napi_value value;
  napi_valuetype type;
  return napi_get_named_property(env, object, name, &value) == napi_ok && napi_typeof(env, value, &type) == napi_ok && type == napi_function &&
         napi_create_reference(env, value, 1, out) == napi_ok;
}

static napi_value create_front(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value options, object, resource, name;
  if (napi_get_cb_info(env, info, &argc, &options, NULL, NULL) != napi_ok) return NULL;
  double keep_alive_ms, headers_timeout_ms;
  front* f = calloc(1, sizeof *f);
  if (!f || !(f->readbuf = malloc(READ_BYTES))) {
    free(f);
    return fail(env, "ENOMEM", "out of memory");
  }
  f->env = env;
  f->shared_second = -1;
  f->collected = true;  // until wrapped: freed by maybe_free on failure below
  if (argc < 1 || !number_property(env, options, "keepAliveMs", &keep_alive_ms) || !number_property(env, options, "headersTimeoutMs", &headers_timeout_ms) ||
      !function_property(env, options, "onHead", &f->on_head) || !function_property(env, options, "onHandOver", &f->on_hand_over)) {
    f->closed = true;
    maybe_free(f);
    return fail(env, "ERR_INVALID_ARG_TYPE", "createFront({ keepAliveMs, headersTimeoutMs, onHead, onHandOver })");
  }
  f->keep_alive_ms = (uint64_t)keep_alive_ms;
  f->headers_timeout_ms = (uint64_t)headers_timeout_ms;
  if (napi_get_uv_event_loop(env, &f->loop) != napi_ok || napi_create_object(env, &object) != napi_ok ||
      napi_create_string_utf8(env, "bulwark:agent-front", NAPI_AUTO_LENGTH, &name) != napi_ok || napi_create_object(env, &resource) != napi_ok || napi_async_init(env, resource, name, &f->async) != napi_ok ||
      uv_timer_init(f->loop, &f->timer) != 0) {
    f->closed = true;
    maybe_free(f);
    return fail(env, "ERR_NATIVE", "cannot set up the front on this thread's event loop");
  }
  f->timer.data = f;
  f->timer_open = true;
  f->open_handles = 1;
  uv_unref((uv_handle_t*)&f->timer);
  uv_timer_start(&f->timer, on_timer, 1000, 1000);
  // The hook first: once wrapped, only the finalizer frees the front.
  if (napi_add_async_cleanup_hook(env, on_env_cleanup, f, &f->cleanup) != napi_ok) f->cleanup = NULL;
  if (!f->cleanup || napi_wrap(env, object, f, on_collected, NULL, NULL) != napi_ok) {
    close_front(f);
    return fail(env, "ERR_NATIVE", "cannot set up the front on this thread's event loop");
  }
  f->collected = false;
  return object;
}

static napi_value listen_front(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 4) return fail(env, "ERR_INVALID_ARG_TYPE", "listen(front, host, port, backlog)");
  front* f = front_of(env, argv[0]);
  if (!f) return NULL;
  if (f->closed) return fail(env, "ERR_SERVER_NOT_RUNNING", "the front is closed");
  if (f->listening >= MAX_LISTENERS) return fail(env, "ERR_INVALID_STATE", "too many listening sockets");
  char host[64];
  size_t host_len = 0;
  int32_t port, backlog;
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &host_len) != napi_ok || napi_get_value_int32(env, argv[2], &port) != napi_ok ||
      napi_get_value_int32(env, argv[3], &backlog) != napi_ok || port < 0 || port > 65535)
    return fail(env, "ERR_INVALID_ARG_TYPE", "listen(front, host: string, port: number, backlog: number)");
  struct sockaddr_storage address = {0};
  socklen_t address_len;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)&address;
  struct sockaddr_in* v4 = (struct sockaddr_in*)&address;
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    address_len = sizeof *v6;
  } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    address_len = sizeof *v4;
  } else
    return fail(env, "ERR_INVALID_IP_ADDRESS", "host must be an IP address");
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, uv_err_name(uv_translate_sys_error(errno)), strerror(errno));
  int one = 1, zero = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      (address.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) ||
      bind(fd, (struct sockaddr*)&address, address_len) != 0 || listen(fd, backlog) != 0) {
    int error = errno;
    close(fd);
    return fail(env, uv_err_name(uv_translate_sys_error(error)), strerror(error));
  }
  listener* l = &f->listeners[f->listening];
  if (uv_poll_init(f->loop, &l->poll, fd) != 0) {
    close(fd);
    return fail(env, "ERR_NATIVE", "cannot poll the listening socket");
  }
  l->poll.data = l;
  l->front = f;
  l->fd = fd;
  f->listening++;
  f->open_handles++;
  if (!f->paused) uv_poll_start(&l->poll, UV_READABLE, on_accept);
  return NULL;
}

// The front a one-argument function (forget, answered, connections, close) is called with; NULL after throwing.
static front* only_argument(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok) return NULL;
  return front_of(env, arg);
}

static napi_value forget_front(napi_env env, napi_callback_info info) {
  front* f = only_argument(env, info);
  if (f) forget_all(f);
  return NULL;
}

static napi_value answered_front(napi_env env, napi_callback_info info) {
  front* f = only_argument(env, info);
  napi_value result;
  if (!f || napi_create_double(env, f->answered, &result) != napi_ok) return NULL;
  f->answered = 0;
  return result;
}

static napi_value connections_front(napi_env env, napi_callback_info info) {
  front* f = only_argument(env, info);
  napi_value result;
  if (!f || napi_create_int32(env, f->connections, &result) != napi_ok) return NULL;
  return result;
}

static napi_value close_front_js(napi_env env, napi_callback_info info) {
  front* f = only_argument(env, info);
  if (f) close_front(f);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor functions[] = {
      {"createFront", NULL, create_front, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, listen_front, NULL, NULL, NULL, napi_default, NULL},
      {"forget", NULL, forget_front, NULL, NULL, NULL, napi_default, NULL},
      {"answered", NULL, answered_front, NULL, NULL, NULL, napi_default, NULL},
      {"connections", NULL, connections_front, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_front_js, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) return NULL;
  return exports;
}
