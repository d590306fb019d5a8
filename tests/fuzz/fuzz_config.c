/*
 * fuzz_config — the config loader (router/config.c, router/config_yaml.c on
 * libyaml, flags/flags.c for flag definitions) on arbitrary YAML.
 *
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - a refused config comes with at least one error line, and every line
 *     names the file ("fuzz.yaml:");
 *   - a loaded config answers its own lookups: every priced model has a price,
 *     every mapped model maps, every flag is found by its name, percentages
 *     stay within 0..10000 basis points.
 */
#include "config.h"

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The names used by the seeds (configs/, tests/): set once, never changed, so
     * no state leaks from one input to the next. */
    setenv("ORIGINAL_API_KEY", "sk-fuzz-original", 1);
    setenv("NEW_API_KEY", "sk-fuzz-new", 1);
    setenv("SWITCHYARD_ADMIN_TOKEN", "fuzz-admin-token", 1);
    setenv("OPENAI_API_KEY", "sk-fuzz-openai", 1);
    setenv("RELAY_API_KEY", "sk-fuzz-relay", 1);
    setenv("FUZZ_EMPTY", "", 1);
    return 0;
}

static void check_loaded(config_t *c)
{
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        const config_provider_t *p = config_provider(c, r);
        if (p == NULL)
            continue;
        for (size_t i = 0; i < p->n_pricing; i++) {
            FUZZ_CHECK(p->pricing[i].model != NULL);
            FUZZ_CHECK(config_price(p, p->pricing[i].model) != NULL);
        }
        for (size_t i = 0; i < p->n_models; i++) {
            FUZZ_CHECK(p->models[i].from != NULL && p->models[i].to != NULL);
            FUZZ_CHECK(config_map_model(p, p->models[i].from) != NULL);
        }
        (void)config_map_model(p, "gpt-4o-mini");
        (void)config_price(p, "gpt-4o-mini");
    }
    for (size_t i = 0; i < c->n_flags; i++) {
        const flag_def_t *f = c->flags[i];
        FUZZ_CHECK(f != NULL && f->key != NULL);
        FUZZ_CHECK(config_flag(c, f->key) != NULL);
        FUZZ_CHECK(f->percentage_bp <= 10000);
        /* evaluation on what the loader built: keyed, unkeyed, with and without model */
        (void)flags_eval(f, "user-1", 6, "gpt-4o-mini", 7);
        (void)flags_eval(f, NULL, 0, NULL, 0xffffffffu);
    }
    FUZZ_CHECK(c->workers >= 1);
    FUZZ_CHECK(c->rollout.n_stages >= 0 && c->rollout.n_stages <= CONFIG_MAX_STAGES);
    for (int i = 0; i < c->rollout.n_stages; i++)
        FUZZ_CHECK(c->rollout.stages_bp[i] <= 10000);
    /* shared snapshots: an extra reference and its release */
    config_t *again = config_ref(c);
    FUZZ_CHECK(again == c);
    config_unref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_errors_t errs;
    memset(&errs, 0, sizeof errs);
    /* An exact-size copy: the loader must not read past len. */
    char *yaml = fuzz_dup(data, size);
    config_t *c = config_load_buffer("fuzz.yaml", yaml, size, &errs);
    if (c == NULL) {
        FUZZ_CHECK(errs.n > 0);
    } else {
        FUZZ_CHECK(errs.n == 0);
        check_loaded(c);
    }
    for (size_t i = 0; i < errs.n; i++)
        FUZZ_CHECK(errs.lines[i] != NULL && strncmp(errs.lines[i], "fuzz.yaml:", 10) == 0);
    for (size_t i = 0; i < errs.n_warnings; i++)
        FUZZ_CHECK(errs.warnings[i] != NULL);
    config_unref(c);
    config_errors_free(&errs);
    free(yaml);
    return 0;
}
