/* kcld/version.h — kcld's version, for programs and plugins built against it. */
#ifndef KCLD_VERSION_H
#define KCLD_VERSION_H

#define KCLD_VERSION_MAJOR 0
#define KCLD_VERSION_MINOR 1
#define KCLD_VERSION_PATCH 0
#define KCLD_VERSION_STRING "0.1.0"

#endif
