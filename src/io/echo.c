#include "io/echo_impl.h"

#include <stdio.h>

void mg_echo_value(char *out, size_t cap, const char *value, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; value && i < len && k < cap - 4; i++)
        out[k++] = value[i] >= 0x20 && value[i] < 0x7f ? value[i] : '?';
    if (value && len > k)
        k += (size_t)snprintf(out + k, cap - k, "...");
    out[k] = '\0';
}
