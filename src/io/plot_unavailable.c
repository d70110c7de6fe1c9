/* The plot functions of a library built without its plot component (cmake -DDM_PLOT=OFF, no
 * cairo): each says so and writes nothing. CMake compiles this file instead of plot.c. */
#include "diffusion.h"

static dm_status no_plots(const char *path, dm_error *err) {
    return dm_error_set(err, DM_ERR_UNSUPPORTED, "%s: this libdiffusion was built without plots "
                        "(rebuild with cmake -DDM_PLOT=ON and libcairo2-dev to draw them)",
                        path ? path : "(no path)");
}

dm_status dm_plot_scatter(const char *path, const float *data, int64_t n_data,
                          const float *samples, int64_t n_samples, int64_t dim,
                          const char *title, dm_error *err) {
    return no_plots(path, err);
}

dm_status dm_plot_strip(const char *path, const float *frames, int frames_count, int64_t n,
                        int64_t dim, const char *const *labels, dm_error *err) {
    return no_plots(path, err);
}

dm_status dm_plot_loss(const char *path, const float *loss, int64_t n, dm_error *err) {
    return no_plots(path, err);
}

dm_status dm_plot_curves(const char *path, const double *x, int64_t n_points, const double *y,
                         const char *const *names, int n_series, const char *xlabel,
                         const char *ylabel, double ref, dm_error *err) {
    return no_plots(path, err);
}

dm_status dm_plot_curves_linear_x(const char *path, const double *x, int64_t n_points,
                                  const double *y, const char *const *names, int n_series,
                                  const char *xlabel, const char *ylabel, double ref,
                                  dm_error *err) {
    return no_plots(path, err);
}
