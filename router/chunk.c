/* chunk — text out of chat completion chunks. See chunk.h. */
#include "chunk.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static cJSON *parse_copy(const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    cJSON *root = cJSON_Parse(copy);
    free(copy);
    return root;
}

static int read_choice(const cJSON *root, const char *field, chunk_t *out)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (!cJSON_IsArray(choices))
        return -1;
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
    if (!c0)
        return 0; /* the usage chunk: no choice, nothing to say */
    const cJSON *holder = cJSON_GetObjectItemCaseSensitive(c0, field);
    const cJSON *text = holder ? cJSON_GetObjectItemCaseSensitive(holder, "content")
                               : cJSON_GetObjectItemCaseSensitive(c0, "text");
    if (cJSON_IsString(text) && text->valuestring[0] && !(out->content = strdup(text->valuestring)))
        return -1;
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    if (cJSON_IsString(fr)) {
        strncpy(out->finish_reason, fr->valuestring, sizeof(out->finish_reason) - 1);
        out->finish_reason[sizeof(out->finish_reason) - 1] = '\0';
    }
    return 0;
}

int chunk_parse_event(const char *data, size_t len, chunk_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        out->done = 1;
        return 0;
    }
    cJSON *root = parse_copy(data, len);
    int rc = root ? read_choice(root, "delta", out) : -1;
    cJSON_Delete(root);
    return rc;
}

int chunk_parse_completion(const char *json, size_t len, chunk_t *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = parse_copy(json, len);
    int rc = root ? read_choice(root, "message", out) : -1;
    cJSON_Delete(root);
    return rc;
}

void chunk_free(chunk_t *c)
{
    free(c->content);
    c->content = NULL;
}
