/*
 * gen — deterministic content for switchyard-sim: a seeded PRNG, the word list
 * answers are made of, prompt-token estimates, embedding vectors and the JSON
 * string quoting every formatter shares.
 *
 * Pure: no I/O, no global state. The same (seed, request number) always gives
 * the same draws, which is what makes a whole sim run reproducible.
 */
#ifndef SWITCHYARD_SIM_GEN_H
#define SWITCHYARD_SIM_GEN_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* splitmix64; tiny state, good enough statistics for picking words and faults. */
typedef struct {
    uint64_t s;
} sim_rng_t;

/*
 * Independent streams per purpose (content, error decisions, embeddings), so
 * that e.g. enabling --error-rate does not change the words a request gets.
 */
enum { SIM_STREAM_CONTENT = 1, SIM_STREAM_ERROR = 2, SIM_STREAM_EMBED = 3 };

void sim_rng_init(sim_rng_t *r, uint64_t seed, uint64_t stream, uint64_t n);
uint64_t sim_rng_next(sim_rng_t *r);
/* Uniform in [0, 1). */
double sim_rng_unit(sim_rng_t *r);

/* A word from the fixed list; *len gets its length. The string is static. */
const char *sim_gen_word(sim_rng_t *r, size_t *len);

/* The usual "4 characters per token" estimate, never below 1. */
long sim_gen_tokens(size_t chars);

/* 64-bit FNV-1a, used to key embedding vectors by their input text. */
uint64_t sim_gen_hash(const void *data, size_t len, uint64_t h);
#define SIM_GEN_HASH_INIT 0xcbf29ce484222325ULL

/* Fills v[0..dims) with a unit vector determined by (seed, key). */
void sim_gen_vector(uint64_t seed, uint64_t key, float *v, size_t dims);

/*
 * Appends s (len bytes) as a quoted JSON string. Control bytes are escaped;
 * bytes >= 0x80 pass through (they come from parsed JSON, so already UTF-8).
 * Returns 0, or -1 when the buffer could not grow.
 */
int sim_json_quote(struct evbuffer *out, const char *s, size_t len);

/* Same, into a new NUL-terminated malloc'd string; NULL on allocation failure. */
char *sim_json_quote_dup(const char *s);

/* Appends standard base64 of data. Returns 0 or -1. */
int sim_base64(struct evbuffer *out, const unsigned char *data, size_t len);

#endif
