/*
 * flags.c — per-request flag evaluation: MurmurHash3 x86_32 bucketing (flagd `fractional`
 * compatible), allow/deny lists, model scope, the unkeyed policy, and the builders the config
 * loader uses. See flags.h for the contract and DESIGN.md §5 for the bucketing rule.
 *
 * The evaluation path (flags_bucket, flags_eval, flags_match_any) never allocates: the hash is
 * computed incrementally over flag_key and then the sticky key, so keys of any length cost the
 * same and cannot fail.
 */
#include "flags.h"

#include <stdlib.h>
#include <string.h>

#define MURMUR_C1 0xcc9e2d51u
#define MURMUR_C2 0x1b873593u
#define BP_TOTAL 10000u

/* Incremental MurmurHash3 x86_32: gives the same value as hashing the concatenation. */
typedef struct {
    uint32_t h;
    uint32_t total; /* the algorithm mixes in the length modulo 2^32 */
    uint8_t tail[4];
    size_t n_tail;
} murmur_state_t;

static uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* Blocks are little-endian by definition of the algorithm; memcpy keeps unaligned reads legal. */
static uint32_t load_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint32_t murmur_scramble(uint32_t k)
{
    k *= MURMUR_C1;
    k = rotl32(k, 15);
    k *= MURMUR_C2;
    return k;
}

static void murmur_block(murmur_state_t *st, uint32_t k)
{
    st->h ^= murmur_scramble(k);
    st->h = rotl32(st->h, 13);
    st->h = st->h * 5u + 0xe6546b64u;
}

static void murmur_init(murmur_state_t *st, uint32_t seed)
{
    st->h = seed;
    st->total = 0;
    st->n_tail = 0;
}

static void murmur_update(murmur_state_t *st, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (len == 0)
        return;
    st->total += (uint32_t)len;
    if (st->n_tail > 0) {
        while (st->n_tail < 4 && len > 0) {
            st->tail[st->n_tail++] = *p++;
            len--;
        }
        if (st->n_tail < 4)
            return;
        murmur_block(st, load_le32(st->tail));
        st->n_tail = 0;
    }
    for (; len >= 4; p += 4, len -= 4)
        murmur_block(st, load_le32(p));
    memcpy(st->tail, p, len);
    st->n_tail = len;
}

static uint32_t murmur_final(const murmur_state_t *st)
{
    uint32_t h = st->h;
    uint32_t k = 0;

    /* The 1..3 tail bytes form a zero-padded little-endian block. */
    if (st->n_tail > 0) {
        for (size_t i = st->n_tail; i-- > 0;)
            k = (k << 8) | st->tail[i];
        h ^= murmur_scramble(k);
    }
    h ^= st->total;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t flags_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    murmur_state_t st;

    murmur_init(&st, seed);
    murmur_update(&st, data, len);
    return murmur_final(&st);
}

/* Scales a uniform 32-bit value to [0, total) without division: flagd's integer formula. */
static uint32_t scale32(uint32_t v, uint32_t total)
{
    return (uint32_t)(((uint64_t)v * total) >> 32);
}

uint32_t flags_bucket(const char *flag_key, const char *key, size_t key_len)
{
    murmur_state_t st;

    murmur_init(&st, 0);
    if (flag_key != NULL)
        murmur_update(&st, flag_key, strlen(flag_key));
    if (key != NULL)
        murmur_update(&st, key, key_len);
    return scale32(murmur_final(&st), BP_TOTAL);
}

int flags_match_any(const flag_match_t *list, size_t n, const char *text, size_t len)
{
    if (text == NULL)
        len = 0;
    for (size_t i = 0; i < n; i++) {
        const flag_match_t *m = &list[i];

        if (m->prefix ? len < m->len : len != m->len)
            continue;
        if (m->len == 0 || memcmp(text, m->text, m->len) == 0)
            return 1;
    }
    return 0;
}

flag_result_t flags_eval(const flag_def_t *def, const char *key, size_t key_len, const char *model,
                         uint32_t random)
{
    flag_result_t r = {FLAG_VARIANT_ORIGINAL, FLAG_REASON_DEFAULT, 0};

    if (def->n_models > 0) {
        if (model == NULL || !flags_match_any(def->models, def->n_models, model, strlen(model)))
            return r;
    }
    if (def->disabled) {
        r.reason = FLAG_REASON_DISABLED;
        return r;
    }
    /* An empty sticky key would put every such request in one bucket; flagd likewise refuses
     * to bucket an empty targetingKey. */
    if (key == NULL || key_len == 0) {
        /* deny: ["*"] is the kill switch: it holds for requests without a key too. */
        if (flags_match_any(def->deny, def->n_deny, "", 0)) {
            r.reason = FLAG_REASON_TARGETING_MATCH;
            return r;
        }
        switch (def->unkeyed) {
        case FLAG_UNKEYED_ORIGINAL:
            return r;
        case FLAG_UNKEYED_NEW:
            r.variant = FLAG_VARIANT_NEW;
            return r;
        case FLAG_UNKEYED_RANDOM:
        default:
            r.reason = FLAG_REASON_SPLIT;
            if (scale32(random, BP_TOTAL) < def->percentage_bp)
                r.variant = FLAG_VARIANT_NEW;
            return r;
        }
    }
    if (flags_match_any(def->deny, def->n_deny, key, key_len)) {
        r.reason = FLAG_REASON_TARGETING_MATCH;
        return r;
    }
    if (flags_match_any(def->allow, def->n_allow, key, key_len)) {
        r.variant = FLAG_VARIANT_NEW;
        r.reason = FLAG_REASON_TARGETING_MATCH;
        return r;
    }
    r.reason = FLAG_REASON_SPLIT;
    r.bucket = flags_bucket(def->key, key, key_len);
    if (r.bucket < def->percentage_bp)
        r.variant = FLAG_VARIANT_NEW;
    return r;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int flags_parse_percentage(const char *text, uint32_t *out_bp)
{
    const char *p = text;
    uint32_t whole = 0, frac = 0;
    int n_whole = 0;

    if (text == NULL || out_bp == NULL)
        return -1;
    for (; is_digit(*p); p++) {
        if (++n_whole > 3)
            return -1;
        whole = whole * 10 + (uint32_t)(*p - '0');
    }
    /* "05" or "00" are most likely typos; only a lone "0" may start with zero. */
    if (n_whole == 0 || (n_whole > 1 && text[0] == '0'))
        return -1;
    if (*p == '.') {
        p++;
        if (!is_digit(p[0]))
            return -1;
        frac = (uint32_t)(p[0] - '0') * 10;
        p++;
        if (is_digit(*p)) {
            frac += (uint32_t)(*p - '0');
            p++;
        }
    }
    if (*p != '\0')
        return -1;
    if (whole > 100 || whole * 100 + frac > BP_TOTAL)
        return -1;
    *out_bp = whole * 100 + frac;
    return 0;
}

const char *flags_variant_name(flag_variant_t v)
{
    switch (v) {
    case FLAG_VARIANT_ORIGINAL:
        return "original";
    case FLAG_VARIANT_NEW:
        return "new";
    }
    return "unknown";
}

const char *flags_reason_name(flag_reason_t r)
{
    switch (r) {
    case FLAG_REASON_SPLIT:
        return "SPLIT";
    case FLAG_REASON_TARGETING_MATCH:
        return "TARGETING_MATCH";
    case FLAG_REASON_DISABLED:
        return "DISABLED";
    case FLAG_REASON_DEFAULT:
        return "DEFAULT";
    }
    return "UNKNOWN";
}

static char *dup_range(const char *s, size_t len)
{
    char *d = malloc(len + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

flag_def_t *flags_def_new(const char *key)
{
    flag_def_t *def;

    if (key == NULL || key[0] == '\0')
        return NULL;
    def = calloc(1, sizeof *def);
    if (def == NULL)
        return NULL;
    def->key = dup_range(key, strlen(key));
    if (def->key == NULL) {
        free(def);
        return NULL;
    }
    def->percentage_bp = 0;
    def->unkeyed = FLAG_UNKEYED_RANDOM;
    return def;
}

/* RFC 9110 token characters: anything else can never match a received header name. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int flags_def_add_sticky(flag_def_t *def, const char *spec)
{
    static const char header_prefix[] = "header:";
    static const char body_prefix[] = "body:";
    flag_sticky_t s = {FLAG_STICKY_API_KEY, NULL, NULL};
    flag_sticky_t *grown;

    if (def == NULL || spec == NULL)
        return -1;
    if (strncmp(spec, header_prefix, sizeof header_prefix - 1) == 0) {
        const char *name = spec + sizeof header_prefix - 1;
        size_t len = strlen(name);

        if (len == 0)
            return -1;
        for (size_t i = 0; i < len; i++) {
            if (!is_tchar((unsigned char)name[i]))
                return -1;
        }
        s.kind = FLAG_STICKY_HEADER;
        s.name = dup_range(name, len);
        if (s.name == NULL)
            return -1;
        /* Header names compare case-insensitively; storing lower case lets lookups be exact. */
        for (size_t i = 0; i < len; i++) {
            if (s.name[i] >= 'A' && s.name[i] <= 'Z')
                s.name[i] = (char)(s.name[i] - 'A' + 'a');
        }
    } else if (strncmp(spec, body_prefix, sizeof body_prefix - 1) == 0) {
        const char *name = spec + sizeof body_prefix - 1;

        if (name[0] == '\0')
            return -1;
        s.kind = FLAG_STICKY_BODY;
        s.name = dup_range(name, strlen(name));
        if (s.name == NULL)
            return -1;
    } else if (strcmp(spec, "api_key") != 0) {
        return -1;
    }
    s.spec = dup_range(spec, strlen(spec));
    grown = s.spec ? realloc(def->sticky, (def->n_sticky + 1) * sizeof *grown) : NULL;
    if (grown == NULL) {
        free(s.name);
        free(s.spec);
        return -1;
    }
    grown[def->n_sticky++] = s;
    def->sticky = grown;
    return 0;
}

int flags_def_add_match(flag_match_t **list, size_t *n, const char *pattern)
{
    flag_match_t m;
    flag_match_t *grown;
    size_t len;

    if (list == NULL || n == NULL || pattern == NULL)
        return -1;
    len = strlen(pattern);
    m.prefix = len > 0 && pattern[len - 1] == '*';
    m.len = m.prefix ? len - 1 : len;
    m.text = dup_range(pattern, m.len);
    if (m.text == NULL)
        return -1;
    grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (grown == NULL) {
        free(m.text);
        return -1;
    }
    grown[(*n)++] = m;
    *list = grown;
    return 0;
}

static void free_matches(flag_match_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i].text);
    free(list);
}

void flags_def_free(flag_def_t *def)
{
    if (def == NULL)
        return;
    for (size_t i = 0; i < def->n_sticky; i++) {
        free(def->sticky[i].name);
        free(def->sticky[i].spec);
    }
    free(def->sticky);
    free_matches(def->allow, def->n_allow);
    free_matches(def->deny, def->n_deny);
    free_matches(def->models, def->n_models);
    free(def->key);
    free(def);
}
