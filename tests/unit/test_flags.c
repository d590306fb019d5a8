/*
 * test_flags.c — unit tests for flags/flags.c: MurmurHash3 vectors, flagd-compatible
 * bucketing, distribution and monotonicity of the split, evaluation order (model scope,
 * disabled, deny, allow, split, unkeyed policy), percentage parsing and the builders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flags.h"

/* Deterministic PRNG (splitmix64) so the statistical tests always see the same keys. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t make_key(uint64_t *state, char *buf, size_t size)
{
    int n = snprintf(buf, size, "user-%016llx", (unsigned long long)splitmix64(state));

    assert_true(n > 0 && (size_t)n < size);
    return (size_t)n;
}

static flag_def_t *new_def(const char *key, uint32_t bp)
{
    flag_def_t *def = flags_def_new(key);

    assert_non_null(def);
    def->percentage_bp = bp;
    return def;
}

static uint32_t bucket_of(const char *flag_key, const char *key)
{
    return flags_bucket(flag_key, key, strlen(key));
}

static void test_murmur3_vectors(void **state)
{
    static const struct {
        const char *data;
        size_t len;
        uint32_t seed;
        uint32_t want;
    } v[] = {
        {"", 0, 0, 0x00000000u},
        {"", 0, 1, 0x514e28b7u},
        {"", 0, 0xffffffffu, 0x81f16f39u},
        {"hello", 5, 0, 0x248bfa47u},
        {"\0\0\0\0", 4, 0, 0x2362f9deu},
        {"\0\0\0", 3, 0, 0x85f0b427u},
        {"\0\0", 2, 0, 0x30f4c306u},
        {"\0", 1, 0, 0x514e28b7u},
        {"\xff\xff\xff\xff", 4, 0, 0x76293b50u},
        {"\x21\x43\x65\x87", 4, 0, 0xf55b516bu},
        {"\x21\x43\x65\x87", 4, 0x5082edeeu, 0x2362f9deu},
        {"\x21\x43\x65", 3, 0, 0x7e4a8634u},
        {"\x21\x43", 2, 0, 0xa0f7b07au},
        {"\x21", 1, 0, 0x72661cf4u},
        {"aaaa", 4, 0x9747b28cu, 0x5a97808au},
        {"aaa", 3, 0x9747b28cu, 0x283e0130u},
        {"aa", 2, 0x9747b28cu, 0x5d211726u},
        {"a", 1, 0x9747b28cu, 0x7fa09ea6u},
        {"abcd", 4, 0x9747b28cu, 0xf0478627u},
        {"abc", 3, 0x9747b28cu, 0xc84a62ddu},
        {"ab", 2, 0x9747b28cu, 0x74875592u},
        {"Hello, world!", 13, 0x9747b28cu, 0x24884cbau},
        {"The quick brown fox jumps over the lazy dog", 43, 0x9747b28cu, 0x2fa826cdu},
        {"flagAbucketKeyA", 15, 0, 0x0a76e18bu},
        {"flagAbucketKey4", 15, 0, 0xe6869e17u},
    };
    (void)state;

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint32_t got = flags_murmur3_32(v[i].data, v[i].len, v[i].seed);

        if (got != v[i].want)
            print_error("vector %zu: got 0x%08x want 0x%08x\n", i, got, v[i].want);
        assert_int_equal(got, v[i].want);
    }
    assert_int_equal(flags_murmur3_32(NULL, 0, 0), 0);
}

/* Unaligned input must hash like aligned input (the block reads go through memcpy). */
static void test_murmur3_unaligned(void **state)
{
    static const char text[] = "The quick brown fox jumps over the lazy dog";
    char buf[sizeof text + 8];
    (void)state;

    for (size_t off = 0; off < 8; off++) {
        memcpy(buf + off, text, sizeof text - 1);
        assert_int_equal(flags_murmur3_32(buf + off, sizeof text - 1, 0x9747b28cu), 0x2fa826cdu);
    }
}

/* DESIGN.md §5 checks: flagd's bucket = (h * T) >> 32 over flag_key || key. */
static void test_bucket_design_vectors(void **state)
{
    uint32_t ha = flags_murmur3_32("flagAbucketKeyA", 15, 0);
    uint32_t h4 = flags_murmur3_32("flagAbucketKey4", 15, 0);
    (void)state;

    assert_int_equal(((uint64_t)ha * 100) >> 32, 4);
    assert_int_equal(((uint64_t)h4 * 100) >> 32, 90);
    assert_int_equal(bucket_of("flagA", "bucketKeyA"), ((uint64_t)ha * 10000) >> 32);
    assert_int_equal(bucket_of("flagA", "bucketKey4"), ((uint64_t)h4 * 10000) >> 32);
    assert_int_equal(bucket_of("flagA", "bucketKeyA"), 408);
    assert_int_equal(bucket_of("flagA", "bucketKey4"), 9004);
    /* Cross-checked with @openfeature/flagd-core 4.0.1's hash (imurmurhash). */
    assert_int_equal(bucket_of("use_new_provider", "user-1"), 5676);
    assert_int_equal(bucket_of("use_new_provider", "alice"), 1029);
}

/* The incremental hash must equal the one-shot hash of the concatenation for every split,
 * including keys far beyond any stack buffer. */
static void test_bucket_matches_concatenation(void **state)
{
    static const size_t long_lens[] = {511, 512, 513, 4095, 4096, 6000};
    char flag[16], key[6000], joined[sizeof flag + sizeof key];
    size_t lens[40 + sizeof long_lens / sizeof long_lens[0]];
    size_t n_lens = 0;
    uint64_t rng = 42;
    (void)state;

    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (char)(splitmix64(&rng) & 0xff);
    for (size_t i = 0; i < 40; i++)
        lens[n_lens++] = i;
    for (size_t i = 0; i < sizeof long_lens / sizeof long_lens[0]; i++)
        lens[n_lens++] = long_lens[i];
    for (size_t flen = 0; flen < 9; flen++) {
        for (size_t i = 0; i < flen; i++)
            flag[i] = (char)('a' + i);
        flag[flen] = '\0';
        for (size_t j = 0; j < n_lens; j++) {
            size_t klen = lens[j];
            uint32_t h;

            memcpy(joined, flag, flen);
            memcpy(joined + flen, key, klen);
            h = flags_murmur3_32(joined, flen + klen, 0);
            assert_int_equal(flags_bucket(flag, key, klen), ((uint64_t)h * 10000) >> 32);
        }
    }
    assert_int_equal(flags_bucket("", NULL, 0), 0);
}

static void test_split_distribution(void **state)
{
    flag_def_t *def = new_def("use_new_provider", 1000);
    uint64_t rng = 1;
    char key[64];
    unsigned n_new = 0, max_bucket = 0;
    (void)state;

    for (int i = 0; i < 100000; i++) {
        size_t len = make_key(&rng, key, sizeof key);
        flag_result_t r = flags_eval(def, key, len, NULL, 0);

        assert_int_equal(r.reason, FLAG_REASON_SPLIT);
        assert_true(r.bucket < 10000);
        assert_int_equal(r.variant == FLAG_VARIANT_NEW, r.bucket < 1000);
        n_new += r.variant == FLAG_VARIANT_NEW;
        if (r.bucket > max_bucket)
            max_bucket = r.bucket;
    }
    /* 10% +- 0.3% of 100,000 keys. */
    assert_in_range(n_new, 9700, 10300);
    assert_true(max_bucket >= 9990);
    flags_def_free(def);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* A key that is new at p stays new at every p' > p, checked through flags_eval itself. */
static void test_split_monotonic(void **state)
{
    enum { N_KEYS = 10000 };
    static const uint32_t fixed[] = {0,    1,    2,    5,    10,   50,   99,   100,  101,
                                     999,  1000, 1001, 1500, 2499, 2500, 2501, 3333, 3750,
                                     4999, 5000, 5001, 7500, 9000, 9990, 9998, 9999, 10000};
    uint32_t sweep[sizeof fixed / sizeof fixed[0] + 5 * 9];
    size_t n_sweep = 0;
    flag_def_t *def = new_def("use_new_provider", 0);
    uint32_t *buckets = calloc(N_KEYS, sizeof *buckets);
    char(*keys)[32] = calloc(N_KEYS, sizeof *keys);
    unsigned char *was_new = calloc(N_KEYS, 1);
    unsigned prev_count = 0;
    uint64_t rng = 7;
    (void)state;

    assert_non_null(buckets);
    assert_non_null(keys);
    assert_non_null(was_new);
    for (size_t i = 0; i < N_KEYS; i++) {
        make_key(&rng, keys[i], sizeof keys[i]);
        buckets[i] = bucket_of(def->key, keys[i]);
    }
    memcpy(sweep, fixed, sizeof fixed);
    n_sweep = sizeof fixed / sizeof fixed[0];
    /* 1bp steps around the buckets of a few real keys, so each step flips at least one key. */
    for (size_t k = 0; k < 5; k++) {
        uint32_t b = buckets[k * 1999];

        for (int d = -4; d <= 4; d++) {
            int64_t p = (int64_t)b + d;

            if (p >= 0 && p <= 10000)
                sweep[n_sweep++] = (uint32_t)p;
        }
    }
    qsort(sweep, n_sweep, sizeof sweep[0], cmp_u32);
    for (size_t s = 0; s < n_sweep; s++) {
        unsigned count = 0;

        def->percentage_bp = sweep[s];
        for (size_t i = 0; i < N_KEYS; i++) {
            flag_result_t r = flags_eval(def, keys[i], strlen(keys[i]), NULL, 0);
            int is_new = r.variant == FLAG_VARIANT_NEW;

            if (was_new[i])
                assert_true(is_new);
            assert_int_equal(is_new, buckets[i] < sweep[s]);
            was_new[i] = (unsigned char)is_new;
            count += (unsigned)is_new;
        }
        assert_true(count >= prev_count);
        if (sweep[s] == 0)
            assert_int_equal(count, 0);
        if (sweep[s] == 10000)
            assert_int_equal(count, N_KEYS);
        prev_count = count;
    }
    free(was_new);
    free(keys);
    free(buckets);
    flags_def_free(def);
}

static void test_split_extremes(void **state)
{
    flag_def_t *def = new_def("f", 0);
    uint64_t rng = 99;
    char key[64];
    (void)state;

    for (int i = 0; i < 2000; i++) {
        size_t len = make_key(&rng, key, sizeof key);

        def->percentage_bp = 0;
        assert_int_equal(flags_eval(def, key, len, NULL, 0).variant, FLAG_VARIANT_ORIGINAL);
        def->percentage_bp = 10000;
        assert_int_equal(flags_eval(def, key, len, NULL, 0).variant, FLAG_VARIANT_NEW);
    }
    flags_def_free(def);
}

static void test_allow_deny(void **state)
{
    flag_def_t *def = new_def("f", 0);
    flag_result_t r;
    (void)state;

    assert_int_equal(flags_def_add_match(&def->allow, &def->n_allow, "vip-1"), 0);
    assert_int_equal(flags_def_add_match(&def->allow, &def->n_allow, "team-*"), 0);
    assert_int_equal(flags_def_add_match(&def->deny, &def->n_deny, "team-blocked*"), 0);
    assert_int_equal(flags_def_add_match(&def->deny, &def->n_deny, "vip-2"), 0);

    r = flags_eval(def, "vip-1", 5, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_NEW);
    assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    assert_int_equal(r.bucket, 0);
    /* exact entries do not match longer keys */
    r = flags_eval(def, "vip-10", 6, NULL, 0);
    assert_int_equal(r.reason, FLAG_REASON_SPLIT);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    r = flags_eval(def, "team-a", 6, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_NEW);
    assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    /* deny wins over allow */
    r = flags_eval(def, "team-blocked-7", 14, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    /* deny also wins over a 100% split */
    def->percentage_bp = 10000;
    r = flags_eval(def, "vip-2", 5, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    /* the key length is honoured, not the NUL */
    r = flags_eval(def, "vip-1xyz", 5, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_NEW);
    assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    flags_def_free(def);
}

static void test_match_any(void **state)
{
    flag_match_t *list = NULL;
    size_t n = 0;
    (void)state;

    assert_int_equal(flags_match_any(NULL, 0, "x", 1), 0);
    assert_int_equal(flags_def_add_match(&list, &n, "abc"), 0);
    assert_int_equal(flags_def_add_match(&list, &n, "pre*"), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].text, "pre");
    assert_int_equal(list[1].len, 3);
    assert_true(list[1].prefix);
    assert_false(list[0].prefix);
    assert_true(flags_match_any(list, n, "abc", 3));
    assert_false(flags_match_any(list, n, "abcd", 4));
    assert_false(flags_match_any(list, n, "ab", 2));
    assert_true(flags_match_any(list, n, "pre", 3));
    assert_true(flags_match_any(list, n, "prefix", 6));
    assert_false(flags_match_any(list, n, "pr", 2));
    assert_false(flags_match_any(list, n, "", 0));
    assert_false(flags_match_any(list, n, "Abc", 3));
    assert_int_equal(flags_def_add_match(&list, &n, "*"), 0);
    assert_true(flags_match_any(list, n, "anything", 8));
    assert_true(flags_match_any(list, n, "", 0));
    assert_true(flags_match_any(list, n, NULL, 0));
    for (size_t i = 0; i < n; i++)
        free(list[i].text);
    free(list);
}

static void test_disabled(void **state)
{
    flag_def_t *def = new_def("f", 10000);
    flag_result_t r;
    (void)state;

    assert_int_equal(flags_def_add_match(&def->allow, &def->n_allow, "vip"), 0);
    def->disabled = 1;
    r = flags_eval(def, "vip", 3, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_DISABLED);
    r = flags_eval(def, "someone", 7, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_DISABLED);
    def->unkeyed = FLAG_UNKEYED_NEW;
    r = flags_eval(def, NULL, 0, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_DISABLED);
    flags_def_free(def);
}

static void test_model_scope(void **state)
{
    flag_def_t *def = new_def("f", 10000);
    flag_result_t r;
    (void)state;

    /* no scope: every model, and no model, is in scope */
    assert_int_equal(flags_eval(def, "k", 1, NULL, 0).variant, FLAG_VARIANT_NEW);
    assert_int_equal(flags_eval(def, "k", 1, "anything", 0).variant, FLAG_VARIANT_NEW);

    assert_int_equal(flags_def_add_match(&def->models, &def->n_models, "gpt-4o-mini"), 0);
    assert_int_equal(flags_def_add_match(&def->models, &def->n_models, "claude-*"), 0);
    r = flags_eval(def, "k", 1, "gpt-4o-mini", 0);
    assert_int_equal(r.variant, FLAG_VARIANT_NEW);
    assert_int_equal(r.reason, FLAG_REASON_SPLIT);
    assert_int_equal(flags_eval(def, "k", 1, "claude-3", 0).variant, FLAG_VARIANT_NEW);
    r = flags_eval(def, "k", 1, "gpt-4o", 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_DEFAULT);
    assert_int_equal(r.bucket, 0);
    r = flags_eval(def, "k", 1, NULL, 0);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(r.reason, FLAG_REASON_DEFAULT);
    /* scope is checked before allow and before disabled */
    assert_int_equal(flags_def_add_match(&def->allow, &def->n_allow, "vip"), 0);
    r = flags_eval(def, "vip", 3, "gpt-4o", 0);
    assert_int_equal(r.reason, FLAG_REASON_DEFAULT);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    def->disabled = 1;
    assert_int_equal(flags_eval(def, "vip", 3, "gpt-4o", 0).reason, FLAG_REASON_DEFAULT);
    assert_int_equal(flags_eval(def, "vip", 3, "claude-x", 0).reason, FLAG_REASON_DISABLED);
    flags_def_free(def);
}

static void test_unkeyed_random(void **state)
{
    flag_def_t *def = new_def("f", 2500);
    uint64_t rng = 3;
    unsigned n_new = 0;
    flag_result_t r;
    (void)state;

    assert_int_equal(def->unkeyed, FLAG_UNKEYED_RANDOM);
    for (int i = 0; i < 100000; i++) {
        r = flags_eval(def, NULL, 0, NULL, (uint32_t)(splitmix64(&rng) >> 32));
        assert_int_equal(r.reason, FLAG_REASON_SPLIT);
        assert_int_equal(r.bucket, 0);
        n_new += r.variant == FLAG_VARIANT_NEW;
    }
    assert_in_range(n_new, 24500, 25500);
    /* the draw is ((uint64_t)random * 10000) >> 32 compared with the percentage */
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0).variant, FLAG_VARIANT_NEW);
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0x3fffffffu).variant, FLAG_VARIANT_NEW);
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0x40000000u).variant, FLAG_VARIANT_ORIGINAL);
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0xffffffffu).variant, FLAG_VARIANT_ORIGINAL);
    /* an empty key is no key, and allow lists cannot match it */
    assert_int_equal(flags_def_add_match(&def->allow, &def->n_allow, "*"), 0);
    r = flags_eval(def, "", 0, NULL, 0xffffffffu);
    assert_int_equal(r.reason, FLAG_REASON_SPLIT);
    assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
    def->percentage_bp = 0;
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0).variant, FLAG_VARIANT_ORIGINAL);
    def->percentage_bp = 10000;
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0xffffffffu).variant, FLAG_VARIANT_NEW);
    flags_def_free(def);
}

static void test_unkeyed_fixed(void **state)
{
    flag_def_t *def = new_def("f", 5000);
    flag_result_t r;
    (void)state;

    def->unkeyed = FLAG_UNKEYED_ORIGINAL;
    for (uint32_t rnd = 0; rnd < 10; rnd++) {
        r = flags_eval(def, NULL, 0, NULL, rnd * 0x1999999au);
        assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
        assert_int_equal(r.reason, FLAG_REASON_DEFAULT);
    }
    def->unkeyed = FLAG_UNKEYED_NEW;
    def->percentage_bp = 0;
    for (uint32_t rnd = 0; rnd < 10; rnd++) {
        r = flags_eval(def, NULL, 0, NULL, rnd * 0x1999999au);
        assert_int_equal(r.variant, FLAG_VARIANT_NEW);
        assert_int_equal(r.reason, FLAG_REASON_DEFAULT);
    }
    /* keyed requests are unaffected by the unkeyed policy */
    assert_int_equal(flags_eval(def, "k", 1, NULL, 0).variant, FLAG_VARIANT_ORIGINAL);
    /* deny: ["*"] is the kill switch, for requests without a key too; a narrower
     * deny pattern cannot match a missing key */
    assert_int_equal(flags_def_add_match(&def->deny, &def->n_deny, "bot-*"), 0);
    assert_int_equal(flags_eval(def, NULL, 0, NULL, 0).variant, FLAG_VARIANT_NEW);
    assert_int_equal(flags_def_add_match(&def->deny, &def->n_deny, "*"), 0);
    for (int u = FLAG_UNKEYED_RANDOM; u <= FLAG_UNKEYED_NEW; u++) {
        def->unkeyed = (flag_unkeyed_t)u;
        def->percentage_bp = 10000;
        r = flags_eval(def, NULL, 0, NULL, 0);
        assert_int_equal(r.variant, FLAG_VARIANT_ORIGINAL);
        assert_int_equal(r.reason, FLAG_REASON_TARGETING_MATCH);
    }
    flags_def_free(def);
}

static void test_parse_percentage(void **state)
{
    static const struct {
        const char *text;
        uint32_t bp;
    } ok[] = {
        {"0", 0},        {"0.0", 0},      {"0.00", 0},    {"0.01", 1},      {"0.1", 10},
        {"0.29", 29},    {"1", 100},      {"10", 1000},   {"12.5", 1250},   {"37.5", 3750},
        {"33.33", 3333}, {"99.99", 9999}, {"100", 10000}, {"100.0", 10000}, {"100.00", 10000},
    };
    static const char *const bad[] = {
        "",    "-1",  "100.01", "101",   "1e2",   "10.123", " 10", "10 ",   "abc",  "nan",
        "+1",  "+0",  ".5",     "5.",    "05",    "00",     "007", "1000",  "0x10", "10%",
        "1,5", "inf", "-0",     "10..5", "1.2.3", "\t1",    "1\n", "100.1", "200",  "0.001",
    };
    uint32_t bp;
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bp = 0xdeadbeef;
        if (flags_parse_percentage(ok[i].text, &bp) != 0)
            print_error("rejected \"%s\"\n", ok[i].text);
        assert_int_equal(flags_parse_percentage(ok[i].text, &bp), 0);
        assert_int_equal(bp, ok[i].bp);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bp = 1234;
        if (flags_parse_percentage(bad[i], &bp) != -1)
            print_error("accepted \"%s\"\n", bad[i]);
        assert_int_equal(flags_parse_percentage(bad[i], &bp), -1);
        assert_int_equal(bp, 1234);
    }
    assert_int_equal(flags_parse_percentage(NULL, &bp), -1);
}

static void test_sticky_specs(void **state)
{
    static const char *const bad[] = {
        "",     "header:",  "body:",    "api_key ",   "API_KEY",    "apikey",    "header",
        "body", "cookie:x", "Header:x", "header:x y", "header:x:y", "header:\t", "query:user",
    };
    flag_def_t *def = new_def("f", 0);
    (void)state;

    assert_int_equal(def->n_sticky, 0);
    assert_int_equal(flags_def_add_sticky(def, "header:X-User-ID"), 0);
    assert_int_equal(flags_def_add_sticky(def, "body:user"), 0);
    assert_int_equal(flags_def_add_sticky(def, "api_key"), 0);
    assert_int_equal(def->n_sticky, 3);
    assert_int_equal(def->sticky[0].kind, FLAG_STICKY_HEADER);
    assert_string_equal(def->sticky[0].name, "x-user-id");
    assert_string_equal(def->sticky[0].spec, "header:X-User-ID");
    assert_int_equal(def->sticky[1].kind, FLAG_STICKY_BODY);
    assert_string_equal(def->sticky[1].name, "user");
    assert_string_equal(def->sticky[1].spec, "body:user");
    assert_int_equal(def->sticky[2].kind, FLAG_STICKY_API_KEY);
    assert_null(def->sticky[2].name);
    assert_string_equal(def->sticky[2].spec, "api_key");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (flags_def_add_sticky(def, bad[i]) != -1)
            print_error("accepted \"%s\"\n", bad[i]);
        assert_int_equal(flags_def_add_sticky(def, bad[i]), -1);
    }
    assert_int_equal(flags_def_add_sticky(def, NULL), -1);
    assert_int_equal(flags_def_add_sticky(NULL, "api_key"), -1);
    assert_int_equal(def->n_sticky, 3);
    flags_def_free(def);
}

static void test_builders_and_names(void **state)
{
    flag_def_t *def = flags_def_new("use_new_provider");
    (void)state;

    assert_non_null(def);
    assert_string_equal(def->key, "use_new_provider");
    assert_int_equal(def->percentage_bp, 0);
    assert_int_equal(def->disabled, 0);
    assert_int_equal(def->unkeyed, FLAG_UNKEYED_RANDOM);
    assert_int_equal(def->n_sticky + def->n_allow + def->n_deny + def->n_models, 0);
    assert_null(flags_def_new(NULL));
    assert_null(flags_def_new(""));
    assert_int_equal(flags_def_add_match(&def->deny, &def->n_deny, NULL), -1);
    assert_int_equal(flags_def_add_match(NULL, &def->n_deny, "x"), -1);
    flags_def_free(def);
    flags_def_free(NULL);

    assert_string_equal(flags_variant_name(FLAG_VARIANT_NEW), "new");
    assert_string_equal(flags_variant_name(FLAG_VARIANT_ORIGINAL), "original");
    assert_string_equal(flags_reason_name(FLAG_REASON_SPLIT), "SPLIT");
    assert_string_equal(flags_reason_name(FLAG_REASON_TARGETING_MATCH), "TARGETING_MATCH");
    assert_string_equal(flags_reason_name(FLAG_REASON_DISABLED), "DISABLED");
    assert_string_equal(flags_reason_name(FLAG_REASON_DEFAULT), "DEFAULT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur3_vectors),
        cmocka_unit_test(test_murmur3_unaligned),
        cmocka_unit_test(test_bucket_design_vectors),
        cmocka_unit_test(test_bucket_matches_concatenation),
        cmocka_unit_test(test_split_distribution),
        cmocka_unit_test(test_split_monotonic),
        cmocka_unit_test(test_split_extremes),
        cmocka_unit_test(test_allow_deny),
        cmocka_unit_test(test_match_any),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_model_scope),
        cmocka_unit_test(test_unkeyed_random),
        cmocka_unit_test(test_unkeyed_fixed),
        cmocka_unit_test(test_parse_percentage),
        cmocka_unit_test(test_sticky_specs),
        cmocka_unit_test(test_builders_and_names),
    };

    return cmocka_run_group_tests_name("flags", tests, NULL, NULL);
}
