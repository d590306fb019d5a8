/* gen — deterministic content generation for switchyard-sim. See gen.h. */
#include "gen.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
    "the",     "router", "moves",   "traffic", "between", "two",     "providers", "while",
    "a",       "flag",   "decides", "which",   "one",     "answers", "each",      "request",
    "stream",  "tokens", "arrive",  "quickly", "and",     "usage",   "is",        "counted",
    "latency", "stays",  "low",     "under",   "load",    "so",      "users",     "never",
    "notice",  "it",     "switch",  "from",    "old",     "to",      "new",       "model",
    "rollout", "goes",   "ten",     "fifty",   "hundred", "percent", "when",      "gates",
    "pass",    "cost",   "drops",   "quality", "holds",   "errors",  "fall",      "back",
    "safely",  "before", "any",     "byte",    "reaches", "client",  "done",      "ok",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sim_rng_init(sim_rng_t *r, uint64_t seed, uint64_t stream, uint64_t n)
{
    /* Mixing each input separately keeps (seed, stream, n) triples from colliding. */
    r->s = mix64(mix64(mix64(seed) ^ stream) + n * 0x9e3779b97f4a7c15ULL);
}

uint64_t sim_rng_next(sim_rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

double sim_rng_unit(sim_rng_t *r)
{
    return (double)(sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

const char *sim_gen_word(sim_rng_t *r, size_t *len)
{
    const char *w = words[sim_rng_next(r) % N_WORDS];
    *len = strlen(w);
    return w;
}

long sim_gen_tokens(size_t chars)
{
    long t = (long)(chars / 4);
    return t < 1 ? 1 : t;
}

uint64_t sim_gen_hash(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void sim_gen_vector(uint64_t seed, uint64_t key, float *v, size_t dims)
{
    sim_rng_t r;
    double norm = 0.0;
    sim_rng_init(&r, seed, SIM_STREAM_EMBED, key);
    for (size_t i = 0; i < dims; i++) {
        double x = sim_rng_unit(&r) * 2.0 - 1.0;
        v[i] = (float)x;
        norm += x * x;
    }
    norm = sqrt(norm);
    if (norm > 0.0)
        for (size_t i = 0; i < dims; i++)
            v[i] = (float)(v[i] / norm);
}

int sim_json_quote(struct evbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    if (evbuffer_add(out, "\"", 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2);
            n = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else {
            continue;
        }
        if (i > run && evbuffer_add(out, s + run, i - run) < 0)
            return -1;
        if (evbuffer_add(out, esc, n) < 0)
            return -1;
        run = i + 1;
    }
    if (len > run && evbuffer_add(out, s + run, len - run) < 0)
        return -1;
    return evbuffer_add(out, "\"", 1) < 0 ? -1 : 0;
}

char *sim_json_quote_dup(const char *s)
{
    struct evbuffer *b = evbuffer_new();
    char *r = NULL;
    size_t n;
    if (!b)
        return NULL;
    if (sim_json_quote(b, s, strlen(s)) == 0) {
        n = evbuffer_get_length(b);
        r = malloc(n + 1);
        if (r) {
            evbuffer_remove(b, r, n);
            r[n] = '\0';
        }
    }
    evbuffer_free(b);
    return r;
}

int sim_base64(struct evbuffer *out, const unsigned char *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        q[3] = tab[v & 63];
        if (evbuffer_add(out, q, 4) < 0)
            return -1;
    }
    if (i < len) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0);
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        q[3] = '=';
        if (evbuffer_add(out, q, 4) < 0)
            return -1;
    }
    return 0;
}
