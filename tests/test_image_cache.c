/* The image folder cache (issue 18): a cache hit holds exactly the pixels and labels a fresh
 * decode gives; a changed folder, a truncated or corrupt cache file each rebuild it, saying
 * why; the set is a read-only mapping, not a copy. */
#include "diffusion.h"
#include "core/core.h"

#include "test_util.h"

#include <fcntl.h>
#include <stb_image_write.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static float level(uint8_t v) { return (float)v / 127.5f - 1.0f; }

static void write_png(const char *path, int w, int h, uint8_t base) {
    uint8_t px[16 * 16 * 3];
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(base + 7 * i);
    CHECK(stbi_write_png(path, w, h, 3, px, w * 3), "write %s", path);
}

/* c: the cache's uint8 set; f: dm_image_folder_load's float set of the same folder. */
static void check_same(const char *what, const dm_image_set *c, const dm_image_set *f) {
    CHECK(c->data.x == NULL && c->data.u8 != NULL, "%s: the cache gives uint8 rows", what);
    CHECK(c->data.n == f->data.n && c->c == f->c && c->h == f->h && c->w == f->w,
          "%s: shape %lld x %lld x %lld x %lld, decoded %lld x %lld x %lld x %lld", what,
          (long long)c->data.n, (long long)c->c, (long long)c->h, (long long)c->w,
          (long long)f->data.n, (long long)f->c, (long long)f->h, (long long)f->w);
    if (c->data.n != f->data.n || c->data.dim != f->data.dim || !c->data.u8) return;
    int64_t bad = -1;
    for (int64_t i = 0; i < f->data.n * f->data.dim && bad < 0; i++)
        if (level(c->data.u8[i]) != f->data.x[i]) bad = i;
    CHECK(bad < 0, "%s: value %lld differs from a fresh decode", what, (long long)bad);
    /* the trainer takes the cache's hash for that of the float form (resume checks it) */
    CHECK(c->data.u8_hash ==
              dm_fnv1a(f->data.x, (size_t)(f->data.n * f->data.dim) * sizeof(float)),
          "%s: the cache's float hash is not the float form's", what);
    CHECK(c->data.num_classes == f->data.num_classes &&
              !c->data.labels == !f->data.labels &&
              (!f->data.labels || memcmp(c->data.labels, f->data.labels,
                                         (size_t)f->data.n * sizeof(int32_t)) == 0),
          "%s: labels differ", what);
}

/* Opens dir through the cache and compares with a fresh decode; returns info.built. */
static int open_and_compare(const char *what, const char *dir, const dm_image_folder_options *o,
                            const char *cache_dir, dm_image_cache_info *info) {
    dm_error err = {0};
    dm_image_set c, f;
    CHECK(dm_image_folder_open(&c, dir, o, cache_dir, info, &err) == DM_OK, "%s: %s", what,
          err.msg);
    CHECK(dm_image_folder_load(&f, dir, o, &err) == DM_OK, "%s: %s", what, err.msg);
    check_same(what, &c, &f);
    dm_image_set_free(&c);
    dm_image_set_free(&f);
    return info->built;
}

int main(void) {
    if (tu_tmpdir_make("test_image_cache")) return 1;
    char dir[600], cls[700], path[800];
    /* two classes of 16 x 16 RGB images, loaded at 8 x 8 */
    snprintf(dir, sizeof dir, "%s/images", tu_tmpdir());
    mkdir(dir, 0777);
    for (int k = 0; k < 2; k++) {
        snprintf(cls, sizeof cls, "%s/class%d", dir, k);
        mkdir(cls, 0777);
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%d.png", cls, i);
            write_png(path, 16, 16, (uint8_t)(40 * k + 11 * i));
        }
    }
    dm_image_folder_options o;
    dm_image_folder_options_default(&o);
    o.size = 8;
    dm_image_cache_info info;

    CHECK(open_and_compare("first open", dir, &o, NULL, &info) == 1, "the first open builds");
    CHECK(strstr(info.path, "/.diffusion-cache/") != NULL, "default cache place: %s", info.path);
    CHECK(open_and_compare("second open", dir, &o, NULL, &info) == 0,
          "the second open reuses the cache: %s", info.reason);
    char cache[4096];
    snprintf(cache, sizeof cache, "%s", info.path);

    /* the hidden cache folder is not taken for a class */
    dm_image_set s;
    dm_error err = {0};
    CHECK(dm_image_folder_load(&s, dir, &o, &err) == DM_OK && s.data.num_classes == 2,
          "the cache folder became a class: %d classes", (int)s.data.num_classes);
    dm_image_set_free(&s);

    /* a mapping, not a copy: writing through it faults, so check the protection instead via
     * the address lying inside the file's mapping (/proc/self/maps names the file) */
    CHECK(dm_image_folder_open(&s, dir, &o, NULL, &info, &err) == DM_OK, "%s", err.msg);
    {
        FILE *maps = fopen("/proc/self/maps", "r");
        char line[8192];
        int found = 0;
        while (maps && fgets(line, sizeof line, maps)) {
            unsigned long lo, hi;
            char perms[8];
            if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && strstr(line, cache) &&
                (unsigned long)(uintptr_t)s.data.u8 >= lo && (unsigned long)(uintptr_t)s.data.u8 < hi)
                found = perms[1] == '-'; /* read-only */
        }
        if (maps) fclose(maps);
        CHECK(found, "the pixels are not a read-only mapping of %s", cache);
    }
    dm_image_set_free(&s);

    /* options are part of the cache: hflip and grey have caches of their own */
    o.hflip = 1;
    CHECK(open_and_compare("hflip", dir, &o, NULL, &info) == 1, "hflip builds its own cache");
    o.hflip = 0;
    o.channels = 1;
    CHECK(open_and_compare("grey", dir, &o, NULL, &info) == 1, "grey builds its own cache");
    o.channels = 0;

    /* a modified image (same size, new content and mtime) and an added one rebuild it */
    snprintf(path, sizeof path, "%s/class1/1.png", dir);
    write_png(path, 16, 16, 200);
    struct timespec later[2] = {{.tv_sec = time(NULL) + 10}, {.tv_sec = time(NULL) + 10}};
    utimensat(AT_FDCWD, path, later, 0);
    CHECK(open_and_compare("modified image", dir, &o, NULL, &info) == 1 &&
              strstr(info.reason, "changed"),
          "a modified image did not rebuild the cache: %s", info.reason);
    snprintf(path, sizeof path, "%s/class0/9.png", dir);
    write_png(path, 16, 16, 99);
    CHECK(open_and_compare("added image", dir, &o, NULL, &info) == 1, "an added image did not "
          "rebuild the cache");
    CHECK(strcmp(info.path, cache) == 0, "the same folder and options name the same cache");

    /* truncated: rebuilt with a reason, never read past its end */
    struct stat sb;
    CHECK(stat(cache, &sb) == 0, "%s", cache);
    CHECK(truncate(cache, sb.st_size - 100) == 0, "truncate");
    CHECK(open_and_compare("truncated cache", dir, &o, NULL, &info) == 1 &&
              strstr(info.reason, "corrupt"),
          "a truncated cache was used: %s", info.reason);
    CHECK(stat(cache, &sb) == 0 && open_and_compare("after rebuild", dir, &o, NULL, &info) == 0,
          "the rebuilt cache is reused");

    /* one pixel byte changed: caught by the content check */
    FILE *fp = fopen(cache, "r+b");
    CHECK(fp != NULL, "open %s", cache);
    if (fp) {
        fseek(fp, 4096 + 5, SEEK_SET);
        int v = fgetc(fp);
        fseek(fp, 4096 + 5, SEEK_SET);
        fputc(v ^ 1, fp);
        fclose(fp);
    }
    CHECK(open_and_compare("corrupt pixel", dir, &o, NULL, &info) == 1 &&
              strstr(info.reason, "corrupt"),
          "a corrupt cache was used: %s", info.reason);
    /* a header byte */
    fp = fopen(cache, "r+b");
    if (fp) {
        fseek(fp, 20, SEEK_SET);
        fputc(0x7f, fp);
        fclose(fp);
    }
    CHECK(open_and_compare("corrupt header", dir, &o, NULL, &info) == 1 &&
              strstr(info.reason, "corrupt"),
          "a corrupt header was used: %s", info.reason);

    /* an explicit cache folder */
    char elsewhere[700];
    snprintf(elsewhere, sizeof elsewhere, "%s/caches", tu_tmpdir());
    CHECK(open_and_compare("cache folder", dir, &o, elsewhere, &info) == 1 &&
              strncmp(info.path, elsewhere, strlen(elsewhere)) == 0,
          "the cache is not in the given folder: %s", info.path);
    /* one that cannot be made is an error naming it */
    snprintf(path, sizeof path, "%s/class0/0.png/sub", dir);
    CHECK(dm_image_folder_open(&s, dir, &o, path, &info, &err) == DM_ERR_IO &&
              strstr(err.msg, path),
          "an impossible cache folder: %s", err.msg);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tu_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_tmpdir());
    return tu_finish("test_image_cache");
}
