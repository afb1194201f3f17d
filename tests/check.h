/* Minimal test harness: CHECK records a result; check_summary prints the tally
 * line ("N passed, N failed, N skipped") that tests/run.sh and CI read. */
#ifndef MG_TEST_CHECK_H
#define MG_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed, check_skipped;

#define CHECK(cond, ...) do {                                            \
        if (cond) { check_passed++; }                                    \
        else { check_failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
               printf(__VA_ARGS__); printf("\n"); }                      \
    } while (0)

#define SKIP(...) do { check_skipped++; printf("SKIP "); printf(__VA_ARGS__); \
                       printf("\n"); } while (0)

static inline int check_summary(const char *suite)
{
    printf("%s: %d passed, %d failed, %d skipped\n", suite, check_passed, check_failed,
           check_skipped);
    return check_failed ? 1 : 0;
}

/* Golden data folder: $GOLDEN or ../shared/golden. */
static inline const char *check_golden_dir(void)
{
    const char *g = getenv("GOLDEN");
    return g && *g ? g : "../shared/golden";
}
#endif
