/* tls.h — a throw-away TLS identity for tests of HTTPS endpoints on
 * 127.0.0.1 (the fault endpoint's and h2test's /tls control calls). */
#ifndef KCLD_TEST_TLS_H
#define KCLD_TEST_TLS_H

/* Makes a self-signed P-256 certificate for IP 127.0.0.1 (CA:TRUE, so it
 * can be given as a CA file) and its key, as PEM strings the caller frees.
 * Returns 0, or -1 with a message on stderr. */
int kcld_test_make_cert(char **cert_pem, char **key_pem);

/* The emulator at `url` serving the same endpoint over TLS too: makes a
 * certificate (kcld_test_make_cert), posts {"cert", "key"} to url+path
 * (h2test's /__h2/tls, kinesis_efo's /__efo/tls), and writes the
 * certificate into a file made from the mkstemp template `ca_path` (the
 * CA file to trust; the caller unlinks it).  Returns the https URL the
 * emulator answered (the caller frees it), or NULL. */
char *kcld_test_tls_front(const char *url, const char *path, char *ca_path);

#endif
