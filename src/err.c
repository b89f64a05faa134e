/* err.c — texts for the KCLD_E* codes. */
#include "err.h"

const char *kcld_strerror(int err)
{
  switch (err) {
  case KCLD_OK: return "success";
  case KCLD_ENOMEM: return "out of memory";
  case KCLD_EINVAL: return "invalid argument";
  case KCLD_ECONFIG: return "invalid configuration";
  case KCLD_EIO: return "I/O error";
  case KCLD_ETRANSPORT: return "transport error";
  case KCLD_EAWS: return "AWS service error";
  case KCLD_EPARSE: return "malformed response";
  case KCLD_ETIMEDOUT: return "timed out";
  case KCLD_ECANCELED: return "cancelled";
  case KCLD_ENOTFOUND: return "not found";
  case KCLD_ECONDITION: return "condition check failed";
  case KCLD_ECREDS: return "no credentials";
  case KCLD_ELOST: return "lease lost";
  }
  return "unknown error";
}
