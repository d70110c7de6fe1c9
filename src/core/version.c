/* The library's version, from the DM_VERSION_* macros of the public header. */
#include "diffusion.h"

#define DM_STR_(x) #x
#define DM_STR(x) DM_STR_(x)

const char *dm_version(void) {
    return DM_STR(DM_VERSION_MAJOR) "." DM_STR(DM_VERSION_MINOR) "." DM_STR(DM_VERSION_PATCH);
}
