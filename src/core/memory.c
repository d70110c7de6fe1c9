/* How much memory this process may still take, read from the places that can stop it: the
 * kernel's MemAvailable, the cgroup's limit (v2 and v1) and the address-space and data ulimits.
 * Large allocations are checked against it first, so an oversized batch or model is refused
 * with a message instead of being killed midway (dm_alloc touches every page it returns). */
#include "core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Below this, allocations are not checked: reading /proc costs more than they risk. */
#define CHECK_MIN_BYTES ((uint64_t)64 << 20)

static bool read_u64(const char *path, uint64_t *v) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[64];
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || strncmp(buf, "max", 3) == 0) return false;
    char *end;
    unsigned long long x = strtoull(buf, &end, 10);
    if (end == buf) return false;
    *v = (uint64_t)x;
    return true;
}

static bool meminfo_available(uint64_t *v) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[256];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *v = (uint64_t)kb * 1024;
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

/* This process's virtual size and data segment (pages of /proc/self/statm, fields 1 and 6). */
static bool own_sizes(uint64_t *vm, uint64_t *data) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return false;
    unsigned long long size, rss, shared, text, lib, dat;
    int n = fscanf(f, "%llu %llu %llu %llu %llu %llu", &size, &rss, &shared, &text, &lib, &dat);
    fclose(f);
    if (n != 6) return false;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    *vm = (uint64_t)size * page;
    *data = (uint64_t)dat * page;
    return true;
}

static void take_min(uint64_t *best, const char **best_src, uint64_t v, const char *src) {
    if (v < *best) {
        *best = v;
        *best_src = src;
    }
}

uint64_t dm_memory_available(const char **source) {
    uint64_t best = UINT64_MAX, v, used;
    const char *src = "no limit found";
    if (meminfo_available(&v)) take_min(&best, &src, v, "MemAvailable in /proc/meminfo");
    if (read_u64("/sys/fs/cgroup/memory.max", &v) &&
        read_u64("/sys/fs/cgroup/memory.current", &used))
        take_min(&best, &src, v > used ? v - used : 0, "the cgroup's memory.max");
    if (read_u64("/sys/fs/cgroup/memory/memory.limit_in_bytes", &v) && v < ((uint64_t)1 << 60) &&
        read_u64("/sys/fs/cgroup/memory/memory.usage_in_bytes", &used))
        take_min(&best, &src, v > used ? v - used : 0, "the cgroup's memory limit");
    uint64_t vm, data;
    struct rlimit rl;
    if (own_sizes(&vm, &data)) {
        if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            take_min(&best, &src, (uint64_t)rl.rlim_cur > vm ? (uint64_t)rl.rlim_cur - vm : 0,
                     "ulimit -v");
        if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            take_min(&best, &src,
                     (uint64_t)rl.rlim_cur > data ? (uint64_t)rl.rlim_cur - data : 0,
                     "ulimit -d");
    }
    if (source) *source = src;
    return best;
}

dm_status dm_memory_check(uint64_t bytes, dm_error *err) {
    if (bytes < CHECK_MIN_BYTES) return DM_OK;
    const char *off = getenv("DM_MEMORY_CHECK");
    if (off && strcmp(off, "0") == 0) return DM_OK;
    const char *src;
    const uint64_t avail = dm_memory_available(&src);
    if (bytes <= avail) return DM_OK;
    const double gib = (double)((uint64_t)1 << 30);
    return dm_error_set(err, DM_ERR_NOMEM,
                        "needs %.2f GiB of memory but %.2f GiB is available (%s); use a smaller "
                        "batch or model (DM_MEMORY_CHECK=0 skips this check)",
                        (double)bytes / gib, (double)avail / gib, src);
}
