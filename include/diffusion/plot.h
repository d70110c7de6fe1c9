/* diffusion/plot.h: pictures drawn with cairo (optional: DM_PLOT).
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Pictures (PNG, drawn with cairo; optional)                                                 */

/* The optional plot component: a library built without it (cmake -DDM_PLOT=OFF: no cairo) keeps
 * these functions, which then return DM_ERR_UNSUPPORTED. */

/* Scatter plot of samples (dim >= 2, first two coordinates) over data points in grey. */
DM_API dm_status dm_plot_scatter(const char *path, const float *data, int64_t n_data,
                                 const float *samples, int64_t n_samples, int64_t dim,
                                 const char *title, dm_error *err);
/* A row of `frames` scatter panels, frames (frames, n, dim) with one label each. */
DM_API dm_status dm_plot_strip(const char *path, const float *frames, int frames_count, int64_t n,
                               int64_t dim, const char *const *labels, dm_error *err);
/* Loss against step, log-scale y, raw values faint and a moving average on top. */
DM_API dm_status dm_plot_loss(const char *path, const float *loss, int64_t n, dm_error *err);
/* Lines through (x[i], y[s * n_points + i]) for each of n_series (1..8) named series, both axes
 * logarithmic, x ticks at the x values; values <= 0 or NaN are gaps. ref > 0 adds a dashed
 * horizontal line there (e.g. a floor or a ratio of 1). */
DM_API dm_status dm_plot_curves(const char *path, const double *x, int64_t n_points,
                                const double *y, const char *const *names, int n_series,
                                const char *xlabel, const char *ylabel, double ref, dm_error *err);
/* The same with a linear x axis (x may be 0, e.g. a guidance scale), y still logarithmic. */
DM_API dm_status dm_plot_curves_linear_x(const char *path, const double *x, int64_t n_points,
                                         const double *y, const char *const *names, int n_series,
                                         const char *xlabel, const char *ylabel, double ref,
                                         dm_error *err);

#ifdef __cplusplus
}
#endif
