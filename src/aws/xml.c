/* xml.c — XML answers to jansson trees with expat; every allocation wiped
 * before it is freed. */
#include "aws/xml.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <openssl/crypto.h>

#include "err.h"

#define MAX_DEPTH 32

struct frame {
  char *name;
  json_t *obj;    /* children so far; NULL while there are none */
  char *text;
  size_t text_len, text_cap;
};

struct reader {
  XML_Parser parser;
  struct frame stack[MAX_DEPTH];
  int depth;
  json_t *root;
  int err;        /* KCLD_EPARSE or KCLD_ENOMEM once something failed */
  const char *why;
};

/* ======== Wiping memory ======== */

static void *wipe_malloc(size_t n)
{
  return malloc(n);
}

static void wipe_free(void *p)
{
  if (p) {
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
  }
}

static void *wipe_realloc(void *p, size_t n)
{
  void *q;
  size_t old;
  if (!p)
    return malloc(n);
  if (n == 0) {
    wipe_free(p);
    return NULL;
  }
  q = malloc(n);
  if (!q)
    return NULL;
  old = malloc_usable_size(p);
  memcpy(q, p, old < n ? old : n);
  wipe_free(p);
  return q;
}

static const XML_Memory_Handling_Suite s_mem = {wipe_malloc, wipe_realloc,
                                                wipe_free};

void kcld_json_wipe(json_t *v)
{
  const char *k;
  json_t *e;
  size_t i;
  if (json_is_string(v)) {
    OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
  } else if (json_is_object(v)) {
    json_object_foreach(v, k, e)
      kcld_json_wipe(e);
  } else if (json_is_array(v)) {
    json_array_foreach(v, i, e)
      kcld_json_wipe(e);
  }
}

/* ======== The reader ======== */

static void fail(struct reader *r, int err, const char *why)
{
  if (!r->err) {
    r->err = err;
    r->why = why;
  }
  XML_StopParser(r->parser, XML_FALSE);
}

static void frame_clean_up(struct frame *f)
{
  wipe_free(f->name);
  wipe_free(f->text);
  if (f->obj) {
    kcld_json_wipe(f->obj);
    json_decref(f->obj);
  }
  memset(f, 0, sizeof(*f));
}

/* "ns:Name" -> "Name". */
static const char *local_name(const char *name)
{
  const char *c = strrchr(name, ':');
  return c ? c + 1 : name;
}

static void on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
  struct reader *r = arg;
  struct frame *f;
  (void)attrs;
  if (r->err)
    return;
  if (r->depth == MAX_DEPTH) {
    fail(r, KCLD_EPARSE, "elements nested too deep");
    return;
  }
  f = &r->stack[r->depth];
  memset(f, 0, sizeof(*f));
  f->name = wipe_malloc(strlen(local_name(name)) + 1);
  if (!f->name) {
    fail(r, KCLD_ENOMEM, "out of memory");
    return;
  }
  strcpy(f->name, local_name(name));
  r->depth++;
}

static void on_text(void *arg, const XML_Char *s, int len)
{
  struct reader *r = arg;
  struct frame *f;
  if (r->err || r->depth == 0 || len <= 0)
    return;
  f = &r->stack[r->depth - 1];
  if (f->text_len + (size_t)len + 1 > f->text_cap) {
    size_t cap = f->text_cap ? f->text_cap : 64;
    char *t;
    while (cap < f->text_len + (size_t)len + 1)
      cap *= 2;
    t = wipe_realloc(f->text, cap);
    if (!t) {
      fail(r, KCLD_ENOMEM, "out of memory");
      return;
    }
    f->text = t;
    f->text_cap = cap;
  }
  memcpy(f->text + f->text_len, s, (size_t)len);
  f->text_len += (size_t)len;
  f->text[f->text_len] = '\0';
}

/* Adds `v` (taken) as `name` to `obj`; a repeated name becomes an array. */
static int add_child(json_t *obj, const char *name, json_t *v)
{
  json_t *old = json_object_get(obj, name);
  if (!old)
    return json_object_set_new(obj, name, v);
  if (!json_is_array(old)) {
    json_t *arr = json_array();
    if (!arr || json_array_append(arr, old) != 0 ||
        json_object_set_new(obj, name, arr) != 0) {
      json_decref(arr);
      json_decref(v);
      return -1;
    }
    old = arr;
  }
  return json_array_append_new(old, v);
}

static void on_end(void *arg, const XML_Char *name)
{
  struct reader *r = arg;
  struct frame *f;
  json_t *v;
  (void)name;
  if (r->err || r->depth == 0)
    return;
  f = &r->stack[--r->depth];
  if (f->obj) {
    v = f->obj;
    f->obj = NULL;
  } else {
    v = json_stringn(f->text ? f->text : "", f->text_len);
    if (!v) {
      frame_clean_up(f);
      fail(r, KCLD_EPARSE, "text is not UTF-8");
      return;
    }
  }
  if (r->depth == 0) {
    if (json_is_object(v)) {
      r->root = v;
    } else {
      r->root = json_object();
      if (!r->root || json_object_set_new(r->root, "", v) != 0)
        fail(r, KCLD_ENOMEM, "out of memory");
    }
  } else {
    struct frame *parent = &r->stack[r->depth - 1];
    if ((!parent->obj && !(parent->obj = json_object())) ||
        add_child(parent->obj, f->name, v) != 0)
      fail(r, KCLD_ENOMEM, "out of memory");
  }
  frame_clean_up(f);
}

static void on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal_subset)
{
  (void)name;
  (void)sysid;
  (void)pubid;
  (void)has_internal_subset;
  fail(arg, KCLD_EPARSE, "a DOCTYPE is not accepted");
}

int kcld_xml_to_json(const char *buf, size_t len, json_t **out, char *err,
                     size_t err_len)
{
  struct reader r;
  int rc;

  *out = NULL;
  memset(&r, 0, sizeof(r));
  r.parser = XML_ParserCreate_MM("UTF-8", &s_mem, NULL);
  if (!r.parser) {
    snprintf(err, err_len, "out of memory");
    return KCLD_ENOMEM;
  }
  XML_SetUserData(r.parser, &r);
  XML_SetElementHandler(r.parser, on_start, on_end);
  XML_SetCharacterDataHandler(r.parser, on_text);
  XML_SetStartDoctypeDeclHandler(r.parser, on_doctype);
  if (len > (size_t)INT32_MAX) {
    r.err = KCLD_EPARSE;
    r.why = "answer too large";
  } else if (XML_Parse(r.parser, buf, (int)len, XML_TRUE) != XML_STATUS_OK &&
             !r.err) {
    r.err = KCLD_EPARSE;
    r.why = XML_ErrorString(XML_GetErrorCode(r.parser));
  }
  if (!r.err && !r.root) {
    r.err = KCLD_EPARSE;
    r.why = "no root element";
  }
  while (r.depth > 0)
    frame_clean_up(&r.stack[--r.depth]);
  XML_ParserFree(r.parser);
  rc = r.err;
  if (rc) {
    snprintf(err, err_len, "%s", r.why ? r.why : "not XML");
    if (r.root) {
      kcld_json_wipe(r.root);
      json_decref(r.root);
    }
    return rc;
  }
  *out = r.root;
  return 0;
}
