/* Echoing a rejected value back in an error message: it comes straight from a
 * request or a configuration file, so only printable ASCII, and bounded. */
#ifndef MG_ECHO_IMPL_H
#define MG_ECHO_IMPL_H
#include <stddef.h>

/* Writes value[0..len) (not necessarily NUL-terminated; NULL allowed) to out
 * as a NUL-terminated string of at most cap - 1 characters: other bytes as
 * '?', "..." when cut short. cap must be at least 8. */
void mg_echo_value(char *out, size_t cap, const char *value, size_t len);

#endif
