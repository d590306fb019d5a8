/*
 * fuzz_ws — WebSocket message handling: client frames through wslay (as ws.c
 * configures it) into the message parser (router/wsmsg.c), and the chat request a
 * message becomes (router/body.c checks it as the proxy does).
 *
 * Input: byte 0 picks the layer. Even: the rest is one text message for wsmsg_parse.
 * Odd: the rest is the byte stream a client sends after the handshake, fed to a wslay
 * server context in slices whose sizes come from byte 0 (so frames split across reads
 * are covered); every text message it yields goes to wsmsg_parse, and the server
 * answers each one (a queued text frame, sent through a discarding sink).
 *
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - a kind is BAD_JSON exactly when no document is kept;
 *   - a channel, when set, is 1..127 bytes; a chat id at most 127 bytes, and valid
 *     UTF-8 whenever the message was (a cut never splits a character);
 *   - wslay hands over only text messages that are valid UTF-8 and within the
 *     configured size limit;
 *   - a chat becomes a JSON object with `stream: true`, `stream_options.include_usage:
 *     true`, no `type` or `id`; when body_parse accepts it, it sees a stream with usage.
 */
#include <cjson/cJSON.h>
#include <wslay/wslay.h>

#include "body.h"
#include "fuzz_common.h"
#include "wsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG 4096 /* the fuzz build's realtime.max_message_bytes */

static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void check_chat(wsmsg_t *m)
{
    size_t len = 0;
    char *body = wsmsg_chat_body(m, &len);
    FUZZ_CHECK(body != NULL);
    FUZZ_CHECK(strlen(body) == len);
    cJSON *doc = cJSON_Parse(body);
    FUZZ_CHECK(cJSON_IsObject(doc));
    FUZZ_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "stream")));
    cJSON *so = cJSON_GetObjectItemCaseSensitive(doc, "stream_options");
    FUZZ_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage")));
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(doc, "type") == NULL);
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(doc, "id") == NULL);
    cJSON_Delete(doc);
    body_info_t info;
    if (body_parse(body, len, &info) == BODY_OK) {
        FUZZ_CHECK(info.stream == 1);
        FUZZ_CHECK(info.include_usage == 1);
    }
    body_info_free(&info);
    free(body);
}

static void one_message(const uint8_t *msg, size_t len)
{
    wsmsg_t m;
    wsmsg_kind_t k = wsmsg_parse(msg, len, &m);
    FUZZ_CHECK(k == m.kind && k >= WSMSG_BAD_JSON && k <= WSMSG_UNKNOWN);
    FUZZ_CHECK((k == WSMSG_BAD_JSON) == (m.doc == NULL));
    if (m.channel) {
        FUZZ_CHECK(k == WSMSG_SUBSCRIBE || k == WSMSG_UNSUBSCRIBE);
        size_t n = strlen(m.channel);
        FUZZ_CHECK(n >= 1 && n <= WSMSG_CHANNEL_MAX);
    }
    FUZZ_CHECK(strlen(m.id) <= WSMSG_ID_MAX);
    if (k != WSMSG_CHAT)
        FUZZ_CHECK(m.id[0] == '\0');
    if (utf8_valid(msg, len))
        FUZZ_CHECK(utf8_valid((const uint8_t *)m.id, strlen(m.id)));
    if (k == WSMSG_CHAT)
        check_chat(&m);
    wsmsg_free(&m);
}

/* ---- the frame layer ------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t len, off;
    size_t slice; /* bytes handed over per recv call */
    int messages;
} feed_t;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    feed_t *f = user;
    size_t left = f->len - f->off;
    if (left == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < left ? len : left;
    if (n > f->slice)
        n = f->slice;
    memcpy(buf, f->data + f->off, n);
    f->off += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)data;
    (void)flags;
    (void)user;
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    memset(buf, 0, len);
    return 0;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    feed_t *f = user;
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    FUZZ_CHECK(arg->msg_length <= MAX_MSG);
    FUZZ_CHECK(utf8_valid(arg->msg, arg->msg_length));
    one_message(arg->msg, arg->msg_length);
    if (f->messages++ < 16) {
        static const char pong[] = "{\"type\":\"pong\"}";
        struct wslay_event_msg reply = {WSLAY_TEXT_FRAME, (const uint8_t *)pong, sizeof pong - 1};
        wslay_event_queue_msg(ctx, &reply);
    }
}

static void frames(const uint8_t *data, size_t size, uint8_t knob)
{
    feed_t f = {data, size, 0, (size_t)(knob >> 1) + 1, 0};
    struct wslay_event_callbacks cbs = {recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg};
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &cbs, &f) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(ctx, MAX_MSG);
    /* As ws.c's read callback: receive what is there, then flush; stop on refusal. */
    for (int rounds = 0; rounds < 4096 && f.off < f.len; rounds++) {
        if (wslay_event_recv(ctx) != 0)
            break;
        if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            break;
    }
    wslay_event_context_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    if ((mode & 1) == 0) {
        char *copy = fuzz_dup(data + 1, size - 1); /* exact size: no terminator to lean on */
        one_message((const uint8_t *)copy, size - 1);
        free(copy);
    } else {
        frames(data + 1, size - 1, mode);
    }
    return 0;
}
