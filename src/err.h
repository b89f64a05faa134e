/* err.h — kcld status codes.
 *
 * Functions return 0 on success or one of these negative codes; the detail
 * goes to the log or to a caller-supplied message buffer, never to exit(). */
#ifndef KCLD_ERR_H
#define KCLD_ERR_H

enum kcld_err {
  KCLD_OK = 0,
  KCLD_ENOMEM = -1,     /* allocation failed */
  KCLD_EINVAL = -2,     /* bad argument or bad input */
  KCLD_ECONFIG = -3,    /* configuration is invalid */
  KCLD_EIO = -4,        /* local I/O failed (file, pipe, socket) */
  KCLD_ETRANSPORT = -5, /* the request never got an HTTP answer */
  KCLD_EAWS = -6,       /* the service answered with an error */
  KCLD_EPARSE = -7,     /* an answer could not be parsed */
  KCLD_ETIMEDOUT = -8,  /* a deadline passed */
  KCLD_ECANCELED = -9,  /* the operation was cancelled (shutdown) */
  KCLD_ENOTFOUND = -10, /* the thing asked for does not exist */
  KCLD_ECONDITION = -11,/* a conditional write found another state */
  KCLD_ECREDS = -12,    /* no credentials could be had */
  KCLD_ELOST = -13      /* a lease is no longer ours */
};

/* A short constant text for a KCLD_E* code ("unknown error" otherwise). */
const char *kcld_strerror(int err);

#endif
