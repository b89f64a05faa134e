/* tls.h — a throw-away TLS identity for tests of HTTPS endpoints on
 * 127.0.0.1 (the fault endpoint's and h2test's /tls control calls). */
#ifndef KCLD_TEST_TLS_H
#define KCLD_TEST_TLS_H

/* Makes a self-signed P-256 certificate for IP 127.0.0.1 (CA:TRUE, so it
 * can be given as a CA file) and its key, as PEM strings the caller frees.
 * Returns 0, or -1 with a message on stderr. */
int kcld_test_make_cert(char **cert_pem, char **key_pem);

#endif
