/* Ctrl-C for the CLI.
 *
 * No signal handler may run on a thread that is inside oneDNN: its JIT GEMM kernels (oneDNN
 * before 3.11, Debian's 2.6 among them) point rsp into the heap while they run, so the kernel's
 * signal frame lands on heap memory and the process later aborts in free() (oneDNN issue
 * #4845; a training run hit this about once in 300 Ctrl-Cs). So SIGINT is blocked in main
 * before any other thread exists (threads inherit the mask: OpenMP's, oneDNN's, MPI's) and one
 * thread of ours takes it with sigwait(). The handler stays installed for threads a library
 * started before main (none with Debian's OpenBLAS), where it does the same thing. */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static atomic_int interrupted;    /* a Ctrl-C arrived while a command was catching it */
static atomic_int catching;       /* cli_catch_interrupt was called */
static int ignored_at_start;      /* SIGINT was ignored when the process began (nohup, & in sh) */

/* A Ctrl-C that is not caught ends the process as SIGINT's default action would (the shell
 * sees status 130), unless the process began with SIGINT ignored. Async-signal-safe. */
static void on_interrupt(void) {
    if (atomic_load(&catching) && !atomic_exchange(&interrupted, 1)) return;
    if (!atomic_load(&catching) && ignored_at_start) return;
    /* not caught, or the second Ctrl-C: end at once */
    signal(SIGINT, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(SIGINT);
}

static void on_sigint(int sig) {
    (void)sig;
    on_interrupt();
}

static void *take_sigint(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) == 0) on_interrupt();
    }
    return NULL;
}

void cli_signals_init(void) {
    struct sigaction old;
    sigaction(SIGINT, NULL, &old);
    ignored_at_start = old.sa_handler == SIG_IGN;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, take_sigint, NULL) == 0)
        pthread_detach(t);
    else /* no thread to take it: the handler on the main thread it is */
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void cli_catch_interrupt(void) { atomic_store(&catching, 1); }
int cli_interrupted(void) { return atomic_load(&interrupted); }
