/* wsmsg: WebSocket client messages (see wsmsg.h). */
#include "wsmsg.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Copies src into dst (cap bytes with the NUL), cut at a UTF-8 character boundary so
 * that an id echoed back never ends in half a character. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        /* Back up over continuation bytes to the start of the cut character. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

wsmsg_kind_t wsmsg_parse(const uint8_t *data, size_t len, wsmsg_t *m)
{
    memset(m, 0, sizeof(*m));
    m->kind = WSMSG_BAD_JSON;
    /* JSON has no raw NUL anywhere (inside a string it must be escaped); cJSON would
     * take one inside a string and the C string would end there ("sk-good\0junk"
     * authenticating as "sk-good"). */
    if (len && memchr(data, '\0', len))
        return m->kind;
    char *copy = malloc(len + 1);
    if (!copy)
        return m->kind;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    /* One object and nothing after it: cJSON alone would accept `{...} junk`. */
    int trailing = 0;
    if (doc && end) {
        for (const char *p = end; p < copy + len; p++)
            if (!is_space(*p)) {
                trailing = 1;
                break;
            }
    }
    free(copy);
    if (!cJSON_IsObject(doc) || trailing) {
        cJSON_Delete(doc);
        return m->kind;
    }
    m->doc = doc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : NULL;
    if (type && strcmp(type, "auth") == 0) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
        m->token = cJSON_IsString(tok) ? tok->valuestring : NULL;
        m->kind = WSMSG_AUTH;
    } else if (type && strcmp(type, "heartbeat") == 0) {
        m->kind = WSMSG_HEARTBEAT;
    } else if (type && (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0)) {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(doc, "channel");
        if (cJSON_IsString(ch) && ch->valuestring[0] && strlen(ch->valuestring) <= WSMSG_CHANNEL_MAX)
            m->channel = ch->valuestring;
        m->kind = type[0] == 's' ? WSMSG_SUBSCRIBE : WSMSG_UNSUBSCRIBE;
    } else if ((type && strcmp(type, "chat") == 0) ||
               (!t && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "stream")) &&
                cJSON_GetObjectItemCaseSensitive(doc, "messages"))) {
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(doc, "id");
        copy_utf8(m->id, sizeof(m->id), cJSON_IsString(idv) ? idv->valuestring : "");
        m->kind = WSMSG_CHAT;
    } else {
        m->kind = WSMSG_UNKNOWN;
    }
    return m->kind;
}

char *wsmsg_chat_body(wsmsg_t *m, size_t *len)
{
    cJSON *msg = m->doc;
    if (m->kind != WSMSG_CHAT || !msg)
        return NULL;
    /* Every copy of an envelope member goes: a duplicate must not survive as a second
     * `stream` for the body checks to trip over later. */
    static const char *const envelope[] = {"type", "id", "stream", "stream_options"};
    for (size_t i = 0; i < sizeof(envelope) / sizeof(envelope[0]); i++)
        while (cJSON_GetObjectItemCaseSensitive(msg, envelope[i]))
            cJSON_DeleteItemFromObjectCaseSensitive(msg, envelope[i]);
    cJSON *so = cJSON_CreateObject();
    if (!so || !cJSON_AddTrueToObject(so, "include_usage") || !cJSON_AddTrueToObject(msg, "stream") ||
        !cJSON_AddItemToObject(msg, "stream_options", so)) {
        cJSON_Delete(so);
        return NULL;
    }
    char *body = cJSON_PrintUnformatted(msg);
    if (body && len)
        *len = strlen(body);
    return body;
}

void wsmsg_free(wsmsg_t *m)
{
    cJSON_Delete(m->doc);
    m->doc = NULL;
}
