/* slowflush: an LD_PRELOAD shim that gives fsync(2), fdatasync(2) and syncfs(2) the
 * latency of a slower disk, for bench/run.py --flush-latency.
 *
 * Model: one device per process that completes one cache flush at a time, taking
 * SLOWFLUSH_US microseconds; callers that arrive while a flush is in progress are
 * covered by the next one (as ext4's journal merges concurrent fsyncs into one
 * commit). The real call is made first, so durability is unchanged; only latency is
 * added. Both servers of a benchmark run get the same shim.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flushed = PTHREAD_COND_INITIALIZER;
static unsigned long started, completed;
static int flushing;

static void device_flush(void) {
    const char *env = getenv("SLOWFLUSH_US");
    long us = env ? atol(env) : 0;
    if (us <= 0) return;
    pthread_mutex_lock(&lock);
    unsigned long needed = started + 1; /* a flush that starts after this call */
    while (completed < needed) {
        if (!flushing) {
            flushing = 1;
            unsigned long mine = ++started;
            pthread_mutex_unlock(&lock);
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&lock);
            completed = mine;
            flushing = 0;
            pthread_cond_broadcast(&flushed);
        } else {
            pthread_cond_wait(&flushed, &lock);
        }
    }
    pthread_mutex_unlock(&lock);
}

#define WRAP(name)                                                   \
    int name(int fd) {                                               \
        static int (*real)(int);                                     \
        if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #name);     \
        int rc = real(fd);                                           \
        if (rc == 0) device_flush();                                 \
        return rc;                                                   \
    }

WRAP(fsync)
WRAP(fdatasync)
WRAP(syncfs)
