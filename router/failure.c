/* failure — attempt failure classes. See failure.h. */
#include "failure.h"

#include <string.h>

static const char *const names[FAIL_N_CLASSES] = {
    [FAIL_NONE] = "ok",
    [FAIL_CONNECT_ERROR] = "connect_error",
    [FAIL_TIMEOUT_CONNECT] = "timeout_connect",
    [FAIL_TIMEOUT_FIRST_BYTE] = "timeout_first_byte",
    [FAIL_TIMEOUT_IDLE] = "timeout_idle",
    [FAIL_TIMEOUT_TOTAL] = "timeout_total",
    [FAIL_UPSTREAM_5XX] = "upstream_5xx",
    [FAIL_UPSTREAM_429] = "upstream_429",
    [FAIL_UPSTREAM_4XX] = "upstream_4xx",
    [FAIL_PROTOCOL] = "protocol",
    [FAIL_CLIENT_CLOSED] = "client_closed",
    [FAIL_LOCAL_ERROR] = "local_error",
};

const char *failure_name(fail_class_t c)
{
    return (unsigned)c < FAIL_N_CLASSES ? names[c] : "unknown";
}

int failure_parse(const char *name)
{
    for (int i = 1; i < FAIL_N_CLASSES; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

fail_class_t failure_of_status(long status)
{
    if (status == 429)
        return FAIL_UPSTREAM_429;
    if (status >= 500)
        return FAIL_UPSTREAM_5XX;
    if (status >= 400)
        return FAIL_UPSTREAM_4XX;
    return FAIL_NONE;
}

int failure_is_timeout(fail_class_t c)
{
    return c == FAIL_TIMEOUT_CONNECT || c == FAIL_TIMEOUT_FIRST_BYTE || c == FAIL_TIMEOUT_IDLE ||
           c == FAIL_TIMEOUT_TOTAL;
}
