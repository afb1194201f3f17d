#include "backend/backend.h"

#include <string.h>

void mg_backend_get_caps(mg_backend *be, mg_backend_caps *caps)
{
    /* zero first: a field a backend does not know of reads as "cannot" */
    memset(caps, 0, sizeof *caps);
    be->ops->get_caps(be, caps);
}
