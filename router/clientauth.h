/*
 * clientauth — client keys (the `clients` block) and browser session tokens.
 *
 * A key is compared by its SHA-256 against every configured client's, in
 * constant time, so neither the key nor the position of a match leaks through
 * timing. Session tokens let a page that cannot set headers (EventSource) prove
 * who it is: "<user>.<client>.<expiry>.<hmac>" with HMAC-SHA256 over the first
 * three parts, base64url; they expire after realtime.session_token_ttl_s.
 * Pure apart from OpenSSL's hash functions; no allocation except where noted.
 */
#ifndef SWITCHYARD_CLIENTAUTH_H
#define SWITCHYARD_CLIENTAUTH_H

#include <stddef.h>

#include "config.h"

/* The client whose key this is, or NULL. */
const config_client_t *clientauth_find(const config_t *cfg, const char *key);

/* Writes a token for client into out (NUL-terminated); -1 when it does not fit. */
int clientauth_token_issue(const config_client_t *client, long long expires_unix,
                           const unsigned char *secret, size_t secret_len, char *out, size_t cap);

/* The client a valid, unexpired token names, or NULL. */
const config_client_t *clientauth_token_check(const config_t *cfg, const char *token,
                                              long long now_unix, const unsigned char *secret,
                                              size_t secret_len);

#endif
