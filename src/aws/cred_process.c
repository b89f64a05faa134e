/* cred_process.c — credentials from a profile's credential_process: the
 * command runs under /bin/sh -c in a process group of its own, its standard
 * output (at most 64 KiB, wiped when freed) is the JSON answer, and the
 * group is killed when it takes longer than the timeout. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "aws/cred_fetch.h"
#include "aws/xml.h"
#include "err.h"

#define MAX_OUTPUT (64 * 1024)

struct proc_job {
  struct kcld_cred_job job;
  uv_process_t proc;
  uv_pipe_t out;
  uv_timer_t timer;
  int open_handles;
  char chunk[4096];           /* one read; wiped after it */
  char *buf;                  /* standard output so far (a secret) */
  size_t len;
  long timeout_ms;
  int64_t exit_status;
  int term_signal;
  unsigned exited : 1, eof : 1, timed_out : 1, too_big : 1, done : 1,
    cancelled : 1;
  kcld_cred_fetch_cb cb;
  void *arg;
};

static void on_closed(uv_handle_t *h)
{
  struct proc_job *j = h->data;
  if (--j->open_handles == 0) {
    if (j->buf)
      OPENSSL_cleanse(j->buf, j->len);
    free(j->buf);
    free(j);
  }
}

static void kill_group(struct proc_job *j)
{
  if (!j->exited && j->proc.pid > 0)
    kill(-j->proc.pid, SIGKILL);
}

/* Maps the output to credentials; returns 0 or KCLD_ECREDS with `why`. */
static int parse_output(struct proc_job *j, struct kcld_creds *out, char *why,
                        size_t why_len)
{
  json_error_t jerr;
  json_t *doc = json_loadb(j->buf ? j->buf : "", j->len, 0, &jerr);
  const char *ak, *sk, *tok, *exp;
  time_t e = 0;
  int rc = KCLD_ECREDS;

  if (!json_is_object(doc)) {
    snprintf(why, why_len, "credential_process output is not a JSON object "
             "(%s)", doc ? "other JSON value" : jerr.text);
    goto done;
  }
  if (json_integer_value(json_object_get(doc, "Version")) != 1 ||
      !json_is_integer(json_object_get(doc, "Version"))) {
    snprintf(why, why_len, "credential_process output has no \"Version\": 1");
    goto done;
  }
  ak = json_string_value(json_object_get(doc, "AccessKeyId"));
  sk = json_string_value(json_object_get(doc, "SecretAccessKey"));
  tok = json_string_value(json_object_get(doc, "SessionToken"));
  exp = json_string_value(json_object_get(doc, "Expiration"));
  if (!ak || !*ak || !sk || !*sk) {
    snprintf(why, why_len, "credential_process output lacks AccessKeyId or "
             "SecretAccessKey");
    goto done;
  }
  if (exp && (e = kcld_cred_parse_time(exp)) <= 0) {
    snprintf(why, why_len, "credential_process output has a bad Expiration");
    goto done;
  }
  if (e && e <= time(NULL)) {
    snprintf(why, why_len, "credential_process returned credentials that "
             "expired at %s", exp);
    goto done;
  }
  rc = kcld_cred_set(out, ak, sk, tok, e);
  if (rc != 0)
    snprintf(why, why_len, "out of memory");

done:
  kcld_json_wipe(doc);
  json_decref(doc);
  return rc;
}

/* Ends the job once the process has exited and its output is in (or
 * abandoned): answers, then closes the handles. */
static void maybe_finish(struct proc_job *j)
{
  struct kcld_creds c;
  char why[256] = "";
  int rc;

  if (j->done || !j->exited || !(j->eof || j->timed_out || j->too_big))
    return;
  j->done = 1;
  if (!j->cancelled) {
    memset(&c, 0, sizeof(c));
    if (j->timed_out) {
      snprintf(why, sizeof(why), "credential_process timed out after %ld ms",
               j->timeout_ms);
      rc = KCLD_ECREDS;
    } else if (j->too_big) {
      snprintf(why, sizeof(why), "credential_process wrote more than %d bytes",
               MAX_OUTPUT);
      rc = KCLD_ECREDS;
    } else if (j->term_signal) {
      snprintf(why, sizeof(why), "credential_process killed by signal %d",
               j->term_signal);
      rc = KCLD_ECREDS;
    } else if (j->exit_status != 0) {
      snprintf(why, sizeof(why), "credential_process exited with status %lld",
               (long long)j->exit_status);
      rc = KCLD_ECREDS;
    } else {
      rc = parse_output(j, &c, why, sizeof(why));
    }
    j->cb(j->arg, rc, rc == 0 ? &c : NULL, why);
  }
  uv_close((uv_handle_t *)&j->timer, on_closed);
  uv_close((uv_handle_t *)&j->proc, on_closed);
  if (!uv_is_closing((uv_handle_t *)&j->out))
    uv_close((uv_handle_t *)&j->out, on_closed);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
  struct proc_job *j = p->data;
  j->exited = 1;
  j->exit_status = status;
  j->term_signal = sig;
  maybe_finish(j);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct proc_job *j = h->data;
  (void)suggested;
  *b = uv_buf_init(j->chunk, sizeof(j->chunk));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  struct proc_job *j = s->data;
  if (n > 0) {
    if (j->len + (size_t)n > MAX_OUTPUT) {
      j->too_big = 1;
    } else {
      char *nb = malloc(j->len + (size_t)n + 1);
      if (!nb) {
        j->too_big = 1;
      } else {
        if (j->buf) {
          memcpy(nb, j->buf, j->len);
          OPENSSL_cleanse(j->buf, j->len);
          free(j->buf);
        }
        memcpy(nb + j->len, b->base, (size_t)n);
        j->len += (size_t)n;
        nb[j->len] = '\0';
        j->buf = nb;
      }
    }
    OPENSSL_cleanse(b->base, (size_t)n);
    if (!j->too_big)
      return;
    kill_group(j);
  } else if (n == 0) {
    return;
  } else {
    j->eof = 1;
  }
  uv_read_stop(s);
  uv_close((uv_handle_t *)s, on_closed);
  maybe_finish(j);
}

static void on_timeout(uv_timer_t *t)
{
  struct proc_job *j = t->data;
  j->timed_out = 1;
  kill_group(j);
  maybe_finish(j);
}

static void job_cancel(struct kcld_cred_job *job)
{
  struct proc_job *j = (struct proc_job *)job;
  j->cancelled = 1;
  kill_group(j); /* the exit callback then closes everything */
}

int kcld_cred_process_start(const struct kcld_cred_env *env,
                            const char *command, kcld_cred_fetch_cb cb,
                            void *arg, struct kcld_cred_job **out, char *why,
                            size_t why_len)
{
  struct proc_job *j = calloc(1, sizeof(*j));
  uv_process_options_t po;
  uv_stdio_container_t stdio[3];
  char *args[] = {"sh", "-c", (char *)command, NULL};
  int rc;

  if (!j) {
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  j->job.cancel = job_cancel;
  j->cb = cb;
  j->arg = arg;
  j->timeout_ms = env->process_timeout_ms;
  uv_pipe_init(env->loop, &j->out, 0);
  uv_timer_init(env->loop, &j->timer);
  j->out.data = j->timer.data = j->proc.data = j;
  j->open_handles = 2;

  memset(&po, 0, sizeof(po));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&j->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  po.file = "/bin/sh";
  po.args = args;
  po.stdio = stdio;
  po.stdio_count = 3;
  po.exit_cb = on_exit_cb;
  po.flags = UV_PROCESS_DETACHED; /* its own group, killed as one */
  rc = uv_spawn(env->loop, &j->proc, &po);
  if (rc != 0) {
    snprintf(why, why_len, "cannot run credential_process: %s",
             uv_strerror(rc));
    j->open_handles = 3;
    uv_close((uv_handle_t *)&j->proc, on_closed);
    uv_close((uv_handle_t *)&j->out, on_closed);
    uv_close((uv_handle_t *)&j->timer, on_closed);
    return KCLD_ECREDS;
  }
  j->open_handles = 3;
  uv_read_start((uv_stream_t *)&j->out, on_alloc, on_read);
  uv_timer_start(&j->timer, on_timeout, (uint64_t)j->timeout_ms, 0);
  *out = &j->job;
  return 0;
}
