/*
 * The load generator of the session lines (a `sessions` job of bench/jobs.ts) in C, so that the client's own
 * cost per session is a few microseconds rather than the Node generator's hundreds: at one connection a session
 * is a chain of round trips, and every microsecond the client spends is added to both servers' figures alike,
 * which pulls every ratio toward 1. It does exactly what bench/load.ts does for such a job: C connections, each
 * logging in as users i, i + C, i + 2C, … in turn; a session is connect, read the greeting, USER, PASS, STAT,
 * [RETR 1..R one at a time or all in one write], QUIT, then shutdown(SHUT_WR) (Node's socket.end()) and wait
 * for the server's close. One command at a time, each written with one write(2); replies parsed as they come
 * (status lines up to CRLF, multi-line bodies up to CRLF.CRLF), never kept.
 *
 * bench/run.ts compiles it (cc -O2) into the bench's temp dir and passes the job as arguments:
 *   load-sessions HOST PORT CONCURRENCY DURATION_MS MAX_SESSIONS RETR PIPELINED ONCE_EACH WARMUP PASSWORD USER...
 * and reads one JSON line {"result":{…SessionsResult…}} from stdout, like bench/load.ts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase { GREETING, USER, PASS, STAT, RETR, QUIT, CLOSING };

struct conn {
  int fd;
  int index;        /* worker index i */
  long n;           /* sessions started by this worker */
  long limit;       /* sessions this worker runs (once-each), or -1 */
  enum phase phase;
  int retr_sent, retr_done;
  int in_body;      /* inside a multi-line body */
  int term;         /* bytes of "\r\n.\r\n" matched */
  char line[512];
  int line_len;
  int done;         /* worker finished */
};

static const char *host, *password;
static int port, conc, retr, pipelined, once_each, warmup;
static long duration_ms, max_sessions;
static char **users;
static int nusers;
static int ep;
static long sessions_done, messages, errors_n, active;
static char first_error[256];
static double deadline;
static int timed;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
  printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  exit(1);
}

static void send_line(struct conn *c, const char *s, int len) {
  if (write(c->fd, s, len) != len) die("write");
}

static void send_fmt(struct conn *c, const char *fmt, const char *arg) {
  char buf[600];
  int len = snprintf(buf, sizeof buf, fmt, arg);
  send_line(c, buf, len);
}

/* The user of this worker's n-th session: users i, i + C, i + 2C, … in turn. */
static const char *user_of(struct conn *c) {
  int mine = 0;
  for (int k = c->index; k < nusers; k += conc) mine++;
  long pick = c->n % mine;
  return users[c->index + pick * conc];
}

static int may_start(struct conn *c) {
  if (c->limit >= 0) return c->n < c->limit;
  if (!timed) return 0;
  return now_ms() < deadline && sessions_done + errors_n < max_sessions && errors_n <= 100;
}

static void start_session(struct conn *c) {
  if (!may_start(c)) {
    c->done = 1;
    active--;
    return;
  }
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  c->phase = GREETING;
  c->line_len = 0;
  c->in_body = 0;
  c->retr_sent = c->retr_done = 0;
}

static void end_session(struct conn *c, const char *error) {
  close(c->fd);
  c->fd = -1;
  c->n++;
  if (error) {
    if (timed) errors_n++;
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", error);
  } else if (timed) {
    sessions_done++;
    messages += retr;
  }
  start_session(c);
}

static void send_retrs(struct conn *c) {
  if (pipelined) {
    char buf[64 * 16];
    int len = 0;
    for (int k = 1; k <= retr; k++) len += snprintf(buf + len, sizeof buf - len, "RETR %d\r\n", k);
    send_line(c, buf, len);
    c->retr_sent = retr;
  } else {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "RETR %d\r\n", ++c->retr_sent);
    send_line(c, buf, len);
  }
}

/* One complete status line. Returns 0, or -1 when the session ended. */
static int on_status(struct conn *c) {
  int ok = c->line_len >= 3 && memcmp(c->line, "+OK", 3) == 0;
  if (!ok) {
    char err[300];
    c->line[c->line_len < 200 ? c->line_len : 200] = 0;
    snprintf(err, sizeof err, "%s: %s", c->phase == GREETING ? "greeting" : c->phase == USER ? "USER" : c->phase == PASS ? "PASS" : c->phase == STAT ? "STAT" : c->phase == RETR ? "RETR" : "QUIT", c->line);
    for (char *p = err; *p; p++)
      if (*p == '"' || *p == '\\' || *p == '\r' || *p == '\n') *p = ' ';
    end_session(c, err);
    return -1;
  }
  switch (c->phase) {
    case GREETING:
      c->phase = USER;
      send_fmt(c, "USER %s\r\n", user_of(c));
      break;
    case USER:
      c->phase = PASS;
      send_fmt(c, "PASS %s\r\n", password);
      break;
    case PASS:
      c->phase = STAT;
      send_line(c, "STAT\r\n", 6);
      break;
    case STAT:
      if (retr > 0) {
        c->phase = RETR;
        send_retrs(c);
      } else {
        c->phase = QUIT;
        send_line(c, "QUIT\r\n", 6);
      }
      break;
    case RETR:
      c->in_body = 1;
      c->term = 2; /* the status line's CRLF: an empty body is ".\r\n" at once */
      break;
    case QUIT:
      c->phase = CLOSING;
      shutdown(c->fd, SHUT_WR);
      break;
    case CLOSING:
      break;
  }
  return 0;
}

static void on_body_end(struct conn *c) {
  c->in_body = 0;
  c->retr_done++;
  if (c->retr_done == retr) {
    c->phase = QUIT;
    send_line(c, "QUIT\r\n", 6);
  } else if (!pipelined) {
    send_retrs(c);
  }
}

static void on_readable(struct conn *c) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EAGAIN) return;
      end_session(c, errno == ECONNRESET ? "connection reset" : errno == ECONNREFUSED ? "connection refused" : "read error");
      return;
    }
    if (n == 0) {
      end_session(c, c->phase == CLOSING ? NULL : "connection closed");
      return;
    }
    static const char T[] = "\r\n.\r\n";
    for (ssize_t i = 0; i < n; i++) {
      char ch = buf[i];
      if (c->in_body) {
        if (ch == T[c->term]) c->term++;
        else c->term = ch == '\r' ? 1 : 0;
        if (c->term == 5) on_body_end(c);
        continue;
      }
      if (c->phase == CLOSING) continue;
      if (ch == '\n') {
        if (c->line_len > 0 && c->line[c->line_len - 1] == '\r') c->line_len--;
        int r = on_status(c);
        c->line_len = 0;
        if (r < 0) return;
      } else if (c->line_len < (int)sizeof c->line - 1) {
        c->line[c->line_len++] = ch;
      }
    }
    if (n < (ssize_t)sizeof buf) return; /* level-triggered: epoll says when more is there */
  }
}

static void run(struct conn *cs) {
  struct epoll_event evs[256];
  while (active > 0) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; k++) {
      struct conn *c = evs[k].data.ptr;
      if (c->fd >= 0) on_readable(c);
    }
  }
  (void)cs;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

int main(int argc, char **argv) {
  if (argc < 12) {
    fprintf(stderr, "usage: %s HOST PORT C DURATION_MS MAX RETR PIPELINED ONCE_EACH WARMUP PASSWORD USER...\n", argv[0]);
    return 64;
  }
  host = argv[1];
  port = atoi(argv[2]);
  conc = atoi(argv[3]);
  duration_ms = atol(argv[4]);
  max_sessions = atol(argv[5]);
  retr = atoi(argv[6]);
  pipelined = atoi(argv[7]);
  once_each = atoi(argv[8]);
  warmup = atoi(argv[9]);
  password = argv[10];
  users = argv + 11;
  nusers = argc - 11;
  if (nusers < conc || conc < 1 || retr < 0 || retr > 64) {
    printf("{\"error\":\"need at least one user per connection, and 0-64 RETRs\"}\n");
    return 1;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct conn *cs = calloc(conc, sizeof *cs);
  if (warmup) {
    /* Every user once, untimed. */
    active = conc;
    for (int i = 0; i < conc; i++) {
      cs[i] = (struct conn){.fd = -1, .index = i};
      int mine = 0;
      for (int k = i; k < nusers; k += conc) mine++;
      cs[i].limit = mine;
      start_session(&cs[i]);
    }
    run(cs);
  }
  timed = 1;
  double t0 = now_ms();
  double cpu0 = cpu_us();
  deadline = t0 + duration_ms;
  active = conc;
  for (int i = 0; i < conc; i++) {
    cs[i] = (struct conn){.fd = -1, .index = i, .limit = -1};
    if (once_each) {
      int mine = 0;
      for (int k = i; k < nusers; k += conc) mine++;
      cs[i].limit = mine;
    }
    start_session(&cs[i]);
  }
  run(cs);
  double seconds = (now_ms() - t0) / 1e3;
  double cpu = cpu_us() - cpu0;
  printf("{\"result\":{\"sessions\":%ld,\"messages\":%ld,\"errors\":%ld,%s%s%s\"seconds\":%.6f,\"perSec\":%.3f,"
         "\"loadCpuUsPerSession\":%.2f,\"generator\":\"c\"}}\n",
         sessions_done, messages, errors_n, first_error[0] ? "\"firstError\":\"" : "", first_error,
         first_error[0] ? "\"," : "", seconds, sessions_done / seconds,
         sessions_done > 0 ? cpu / sessions_done : 0.0);
  return 0;
}
