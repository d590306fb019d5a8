/* pricing — request cost. See pricing.h. */
#include "pricing.h"

double pricing_cost(const config_price_t *price, long prompt, long completion, long cached)
{
    if (!price)
        return -1;
    if (cached > prompt)
        cached = prompt;
    if (cached < 0)
        cached = 0;
    return ((double)(prompt - cached) * price->input + (double)cached * price->cached_input +
            (double)completion * price->output) /
           1e6;
}
