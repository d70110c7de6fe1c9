/* Small measurement helpers shared by the bench subcommands. */
#pragma once

/* Median of t[0..n) (sorts t in place; the mean of the two middle values when n is even). */
double cli_median(double *t, int n);
/* Peak resident set size of this process so far, in MiB. */
double cli_peak_rss_mib(void);
