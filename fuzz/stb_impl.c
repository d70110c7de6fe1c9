/* stb_image and stb_image_resize compiled into the image harness from Debian's headers (the
 * same source as the libstb.so the tool links), so they are instrumented too: libFuzzer then
 * sees coverage inside the decoders and ASan sees their reads and writes. The definitions here
 * take precedence over libstb.so's for this executable. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunused-parameter"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wunused-but-set-variable"
#endif
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
