/* fault — parsing of the x-sim-fault header. See fault.h. */
#include "fault.h"

#include <stdio.h>
#include <string.h>

#define KNOWN                                                                                      \
    "status=N, retry_after=N, hang_before_headers, hang_after_headers, "                           \
    "reset_after_chunks=N, close_after_chunks=N, stall_after_chunks=N, end_after_chunks=N, "       \
    "comment_first, echo_key, hop_header, delay_ms=N, no_usage, usage_on_last, garbage; "          \
    "prefix NAME: to aim at one sim"

void sim_fault_init(sim_fault_t *f)
{
    memset(f, 0, sizeof(*f));
    f->retry_after = -1;
    f->reset_after = -1;
    f->stall_after = -1;
    f->end_after = -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Strict decimal in [lo, hi]: no sign, no spaces inside, no trailing junk. */
static int parse_num(const char *s, size_t len, long lo, long hi, long *out)
{
    long v = 0;
    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

static int fail(char *err, size_t errlen, const char *what, const char *item, size_t len)
{
    if (errlen > 0)
        snprintf(err, errlen, "x-sim-fault: %s '%.*s' (known: " KNOWN ")", what,
                 (int)(len > 64 ? 64 : len), item);
    return -1;
}

int sim_fault_parse(const char *s, const char *self, sim_fault_t *f, char *err, size_t errlen)
{
    sim_fault_init(f);
    if (errlen > 0)
        err[0] = '\0';
    if (!s)
        return 0;
    while (*s) {
        const char *end = strchr(s, ',');
        const char *item, *eq, *val;
        size_t ilen, nlen, vlen;
        long v;
        if (!end)
            end = s + strlen(s);
        item = s;
        ilen = (size_t)(end - s);
        s = *end ? end + 1 : end;
        while (ilen > 0 && is_space(*item)) {
            item++;
            ilen--;
        }
        while (ilen > 0 && is_space(item[ilen - 1]))
            ilen--;
        if (ilen == 0)
            continue; /* "a,,b" and a trailing comma are harmless */

        /* "NAME:fault": only for the sim called NAME. */
        const char *colon = memchr(item, ':', ilen);
        if (colon && !memchr(item, '=', (size_t)(colon - item))) {
            size_t slen = (size_t)(colon - item);
            if (slen == 0)
                return fail(err, errlen, "empty sim name in", item, ilen);
            int mine = self && strlen(self) == slen && memcmp(item, self, slen) == 0;
            ilen -= slen + 1;
            item = colon + 1;
            if (!mine) {
                /* Still checked, so a typo aimed at the other sim fails too. */
                sim_fault_t scratch;
                char one[128];
                if (ilen >= sizeof(one))
                    return fail(err, errlen, "fault too long", item, ilen);
                memcpy(one, item, ilen);
                one[ilen] = '\0';
                if (sim_fault_parse(one, NULL, &scratch, err, errlen) < 0)
                    return -1;
                continue;
            }
        }

        eq = memchr(item, '=', ilen);
        nlen = eq ? (size_t)(eq - item) : ilen;
        val = eq ? eq + 1 : NULL;
        vlen = eq ? ilen - nlen - 1 : 0;

        int *flag = name_is(item, nlen, "hang_before_headers")  ? &f->hang_before
                    : name_is(item, nlen, "hang_after_headers") ? &f->hang_after
                    : name_is(item, nlen, "no_usage")           ? &f->no_usage
                    : name_is(item, nlen, "usage_on_last")      ? &f->usage_on_last
                    : name_is(item, nlen, "comment_first")      ? &f->comment_first
                    : name_is(item, nlen, "echo_key")           ? &f->echo_key
                    : name_is(item, nlen, "hop_header")         ? &f->hop_header
                    : name_is(item, nlen, "garbage")            ? &f->garbage
                    : name_is(item, nlen, "cut_json")           ? &f->cut_json
                                                                : NULL;
        if (flag) {
            if (eq)
                return fail(err, errlen, "fault takes no value", item, ilen);
            *flag = 1;
        } else if (name_is(item, nlen, "status")) {
            if (!eq || parse_num(val, vlen, 400, 599, &v) < 0)
                return fail(err, errlen, "status needs a value 400..599", item, ilen);
            f->status = (int)v;
        } else if (name_is(item, nlen, "retry_after")) {
            if (!eq || parse_num(val, vlen, 0, 86400, &v) < 0)
                return fail(err, errlen, "retry_after needs seconds 0..86400", item, ilen);
            f->retry_after = (int)v;
        } else if (name_is(item, nlen, "reset_after_chunks") ||
                   name_is(item, nlen, "close_after_chunks")) {
            if (!eq || parse_num(val, vlen, 0, 1000000, &v) < 0)
                return fail(err, errlen,
                            "reset_after_chunks/close_after_chunks need a count "
                            "0..1000000",
                            item, ilen);
            f->reset_after = v;
            f->close_clean = name_is(item, nlen, "close_after_chunks");
        } else if (name_is(item, nlen, "end_after_chunks")) {
            if (!eq || parse_num(val, vlen, 0, 1000000, &v) < 0)
                return fail(err, errlen, "end_after_chunks needs a count 0..1000000", item, ilen);
            f->end_after = v;
        } else if (name_is(item, nlen, "stall_after_chunks")) {
            if (!eq || parse_num(val, vlen, 0, 1000000, &v) < 0)
                return fail(err, errlen, "stall_after_chunks needs a count 0..1000000", item, ilen);
            f->stall_after = v;
        } else if (name_is(item, nlen, "delay_ms")) {
            if (!eq || parse_num(val, vlen, 0, 3600000, &v) < 0)
                return fail(err, errlen, "delay_ms needs milliseconds 0..3600000", item, ilen);
            f->delay_ms = v;
        } else {
            return fail(err, errlen, "unknown fault", item, ilen);
        }
    }
    return 0;
}
