/*
 * pricing — the cost of a request's tokens at a provider's prices.
 * Pure. Prices are USD per million tokens; cached tokens are part of the prompt
 * tokens and billed at the cached_input price instead of the input price.
 */
#ifndef SWITCHYARD_PRICING_H
#define SWITCHYARD_PRICING_H

#include "config.h"

/* USD, or -1 when price is NULL (unknown: never reported as zero). */
double pricing_cost(const config_price_t *price, long prompt, long completion, long cached);

#endif
