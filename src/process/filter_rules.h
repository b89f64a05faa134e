/* filter_rules.h — the compiled form of filter patterns, shared by the two
 * halves of the filter module: filter.c compiles pattern trees into it,
 * filter_rules.c frees it and matches records against it (and implements
 * kcld_filter_match of filter.h).  Internal to the module: other code uses
 * process/filter.h. */
#ifndef KCLD_PROCESS_FILTER_RULES_H
#define KCLD_PROCESS_FILTER_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "process/filter.h"

/* What one rule of a value list tests. */
enum mkind {
  M_STRING,       /* equal to strs[0] */
  M_NUMBER,       /* a number written exactly as strs[0] */
  M_NULL,
  M_TRUE,
  M_FALSE,
  M_PREFIX,       /* strs[0] */
  M_SUFFIX,
  M_PREFIX_IC,    /* strs[0], case folded */
  M_SUFFIX_IC,
  M_EQUALS_IC,
  M_WILDCARD,     /* wild[0] */
  M_NUMERIC,      /* lo .. hi */
  M_EXISTS,       /* exists */
  M_CIDR,         /* family, net, bits */
  M_NOT_STRING,   /* none of strs[0..n) */
  M_NOT_NUMBER,   /* none of nums[0..n) */
  M_NOT_PREFIX,   /* starts with none of strs[0..n) */
  M_NOT_SUFFIX,
  M_NOT_EQUALS_IC, /* strs folded */
  M_NOT_WILDCARD  /* wild[0..n) */
};

struct fstr {
  char *s;                  /* NUL-terminated */
  size_t len;
};

/* A wildcard: the text between its stars, unescaped (nseg = stars + 1;
 * only the first and last may be empty). */
struct wild {
  struct fstr *seg;         /* seg[0].s owns the text of all */
  size_t nseg;
};

struct matcher {
  enum mkind kind;
  size_t n;                 /* entries in strs, nums or wild */
  struct fstr *strs;
  double *nums;
  struct wild *wild;
  double lo, hi;            /* M_NUMERIC; -/+HUGE_VAL when open */
  unsigned char lo_incl, hi_incl;
  unsigned char exists;     /* M_EXISTS: 1 true, 0 false */
  unsigned char family;     /* M_CIDR: 4 or 6 */
  unsigned char bits;
  unsigned char net[16];
};

struct pnode;

/* A field of a pattern mapping: a nested mapping or a list of rules. */
struct field {
  char *name;
  size_t name_len;
  struct pnode *obj;        /* a mapping, or NULL */
  struct matcher *m;        /* the list, OR'ed */
  size_t nm;
};

/* "$or": one of the mappings matches. */
struct orgroup {
  struct pnode **alts;
  size_t n;
};

/* A pattern mapping: every field and every $or group matches. */
struct pnode {
  struct field *f;
  size_t nf;
  struct orgroup *ors;
  size_t nors;
};

struct pattern {
  struct pnode *root;       /* the record-level mapping */
  int uses_data;            /* names data (then a non-JSON payload fails) */
};

struct kcld_filter {
  struct pattern p[KCLD_FILTER_MAX_PATTERNS];
  size_t n;
  int any_data;             /* some pattern names data */
  int any_arrival;          /* some pattern names approximateArrivalTimestamp */
  struct fstr *names;       /* every field name under data in any pattern:
                               members of the payload named otherwise are
                               skipped, not parsed into the document */
  size_t nnames;
};

/* Frees a compiled mapping and all below it; NULL is ignored. */
void kcld_filter_pnode_free(struct pnode *p);

/* Frees what a field holds and zeroes it. */
void kcld_filter_field_clear(struct field *f);

/* kcld_filter_utf8_next() returns this plus the byte for a byte that does
 * not start a well-formed UTF-8 character. */
#define KCLD_FILTER_BAD_BYTE 0x80000000u

/* The code point at *p (p < end), advancing *p past it. */
uint32_t kcld_filter_utf8_next(const unsigned char **p,
                               const unsigned char *end);

/* The lower-case form of cp for the letters filter.h lists (ASCII,
 * Latin-1, Latin Extended-A, Greek, Cyrillic); cp itself otherwise.  The
 * result is always as long as cp in UTF-8. */
uint32_t kcld_filter_fold(uint32_t cp);

#endif
