/* clientauth — client keys and session tokens. See clientauth.h. */
#include "clientauth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const config_client_t *clientauth_find(const config_t *cfg, const char *key)
{
    if (!key || cfg->n_clients == 0)
        return NULL;
    unsigned char digest[32];
    SHA256((const unsigned char *)key, strlen(key), digest);
    const config_client_t *found = NULL;
    /* Every entry is compared, match or not. */
    for (size_t i = 0; i < cfg->n_clients; i++)
        if (CRYPTO_memcmp(digest, cfg->clients[i].key_sha256, 32) == 0 && !found)
            found = &cfg->clients[i];
    return found;
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[j++] = tbl[(v >> 18) & 63];
        out[j++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[j++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[j++] = tbl[v & 63];
    }
    out[j] = '\0';
}

/* The token's MAC covers its text and the SHA-256 of the client's key (not in the text):
 * rotating a client's key by a reload voids the tokens issued with the old one. */
static int mac(const char *msg, size_t len, const unsigned char key_sha256[32],
               const unsigned char *secret, size_t secret_len, char *out)
{
    unsigned char buf[700], d[32];
    unsigned int dl = sizeof(d);
    if (len > sizeof(buf) - 32)
        return -1;
    memcpy(buf, msg, len);
    memcpy(buf + len, key_sha256, 32);
    HMAC(EVP_sha256(), secret, (int)secret_len, buf, len + 32, d, &dl);
    b64url(d, 32, out);
    return 0;
}

/* User ids and client names go in the token as base64url, so any byte is safe. */
int clientauth_token_issue(const config_client_t *client, long long expires_unix,
                           const unsigned char *secret, size_t secret_len, char *out, size_t cap)
{
    char user[400], name[120], sig[48];
    if (strlen(client->user) > 256 || strlen(client->name) > 64)
        return -1;
    b64url((const unsigned char *)client->user, strlen(client->user), user);
    b64url((const unsigned char *)client->name, strlen(client->name), name);
    int n = snprintf(out, cap, "%s.%s.%lld", user, name, expires_unix);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    if (mac(out, (size_t)n, client->key_sha256, secret, secret_len, sig) != 0)
        return -1;
    int m = snprintf(out + n, cap - (size_t)n, ".%s", sig);
    return m < 0 || (size_t)m >= cap - (size_t)n ? -1 : 0;
}

const config_client_t *clientauth_token_check(const config_t *cfg, const char *token,
                                              long long now_unix, const unsigned char *secret,
                                              size_t secret_len)
{
    if (!token)
        return NULL;
    const char *last = strrchr(token, '.');
    if (!last || last == token || (size_t)(last - token) > 600)
        return NULL;
    /* The client it names first (the MAC needs its key); nothing is trusted before the
     * MAC matches. */
    const char *exp_dot = last - 1;
    while (exp_dot > token && *exp_dot != '.')
        exp_dot--;
    const char *name_dot = exp_dot > token ? exp_dot - 1 : token;
    while (name_dot > token && *name_dot != '.')
        name_dot--;
    if (exp_dot <= token || *name_dot != '.')
        return NULL;
    const config_client_t *client = NULL;
    char want[120];
    for (size_t i = 0; i < cfg->n_clients && !client; i++) {
        b64url((const unsigned char *)cfg->clients[i].name, strlen(cfg->clients[i].name), want);
        size_t wl = strlen(want);
        if ((size_t)(exp_dot - name_dot - 1) == wl && memcmp(name_dot + 1, want, wl) == 0)
            client = &cfg->clients[i];
    }
    char sig[48];
    if (!client ||
        mac(token, (size_t)(last - token), client->key_sha256, secret, secret_len, sig) != 0)
        return NULL;
    if (strlen(last + 1) != strlen(sig) || CRYPTO_memcmp(last + 1, sig, strlen(sig)) != 0)
        return NULL;
    if (strtoll(exp_dot + 1, NULL, 10) <= now_unix)
        return NULL;
    return client;
}
