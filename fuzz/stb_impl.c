/* stb_image_resize compiled into the image harnesses from Debian's header (the same source as
 * the libstb.so the tool links), so it is instrumented too: libFuzzer sees coverage inside it
 * and ASan its reads and writes. The definitions here take precedence over libstb.so's for
 * these executables. (Decoding is libpng's and libjpeg-turbo's: the system's libraries,
 * uninstrumented, fuzzed upstream.) */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunused-parameter"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wunused-but-set-variable"
#endif
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
