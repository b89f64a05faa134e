/* fault.c — blocking control-plane calls to the fault endpoint. */
#include "fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

struct buf {
  char *p;
  size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
  struct buf *b = ud;
  size_t n = size * nmemb;
  char *np = realloc(b->p, b->n + n + 1);
  if (!np)
    return 0;
  memcpy(np + b->n, ptr, n);
  b->p = np;
  b->n += n;
  b->p[b->n] = '\0';
  return n;
}

static json_t *request(const char *fault_url, const char *path,
                       const char *body)
{
  char url[1024];
  struct buf b = {NULL, 0};
  json_t *out = NULL;
  json_error_t jerr;
  long status = 0;
  CURL *c = curl_easy_init();

  if (!c)
    return NULL;
  snprintf(url, sizeof(url), "%s%s", fault_url, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || status != 200) {
    fprintf(stderr, "fault: %s -> %s, HTTP %ld: %s\n", url,
            curl_easy_strerror(rc), status, b.p ? b.p : "");
    free(b.p);
    return NULL;
  }
  out = json_loads(b.p ? b.p : "", 0, &jerr);
  if (!out)
    fprintf(stderr, "fault: %s: bad JSON answer: %s\n", url, jerr.text);
  free(b.p);
  return out;
}

json_t *kcld_fault_post(const char *fault_url, const char *path,
                        const char *body)
{
  return request(fault_url, path, body ? body : "");
}

int kcld_fault_script(const char *fault_url, const char *script_json)
{
  json_t *r = request(fault_url, "/__fault/script", script_json);
  if (!r)
    return -1;
  json_decref(r);
  return 0;
}

int kcld_fault_steps(const char *fault_url, const char *upstream,
                     const char *steps)
{
  char *script = NULL;
  int rc;
  if (asprintf(&script, "{\"upstream\":\"%s\",\"steps\":%s,"
               "\"then\":\"proxy\"}", upstream, steps) < 0)
    return -1;
  rc = kcld_fault_script(fault_url, script);
  free(script);
  return rc;
}

json_t *kcld_fault_stats(const char *fault_url)
{
  return request(fault_url, "/__fault/stats", NULL);
}

long kcld_fault_count(const char *fault_url, const char *key,
                      const char *target)
{
  json_t *s = kcld_fault_stats(fault_url);
  json_t *v;
  long n = -1;
  if (!s)
    return -1;
  if (target) {
    v = json_object_get(json_object_get(s, "targets"), target);
    n = v ? (long)json_integer_value(v) : 0;
  } else if ((v = json_object_get(s, key)) != NULL && json_is_integer(v)) {
    n = (long)json_integer_value(v);
  }
  json_decref(s);
  return n;
}
