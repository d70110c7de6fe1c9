/* Thread control: OpenMP for our own loops; OpenBLAS is told the same count. */
#include "diffusion.h"

#include <omp.h>

#include <cblas.h>

void dm_set_num_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int dm_get_num_threads(void) { return omp_get_max_threads(); }
