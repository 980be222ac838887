/* failsync: an LD_PRELOAD shim that makes fsync(2), fdatasync(2) and syncfs(2) fail
 * with EIO, as a disk whose writeback failed would, for the storage-failure tests.
 *
 * A call fails while the file named by FAILSYNC_TRIGGER exists, for a file descriptor
 * whose path (readlink of /proc/self/fd/N) contains FAILSYNC_MATCH, and only for the
 * calls listed in FAILSYNC_CALLS ("fsync,fdatasync,syncfs"; default all three).
 * syncfs(2) flushes a whole file system, whichever descriptor names it, so when
 * FAILSYNC_MATCH is an existing path a syncfs fails for any descriptor on that path's
 * file system (the program may hold one on another directory there). The
 * real call is still made first, so the data does reach the disk: what is tested is
 * what the program does with the error. With FAILSYNC_ONCE=1 the trigger file is
 * removed by the first failure: the next call succeeds, as Linux reports a writeback
 * error to an open file only once (the "fsyncgate" behaviour a program must not
 * trust). Each failure appends "<call> <path>" to FAILSYNC_LOG, if set.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int should_fail(const char *call, int fd) {
    const char *trigger = getenv("FAILSYNC_TRIGGER");
    if (!trigger || access(trigger, F_OK) != 0) return 0;
    const char *calls = getenv("FAILSYNC_CALLS");
    if (calls && *calls) {
        size_t n = strlen(call);
        const char *p = calls;
        int listed = 0;
        while ((p = strstr(p, call)) != NULL) {
            if ((p == calls || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) {
                listed = 1;
                break;
            }
            p += n;
        }
        if (!listed) return 0;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len < 0) return 0;
    path[len] = '\0';
    const char *match = getenv("FAILSYNC_MATCH");
    if (match && *match && !strstr(path, match)) {
        struct stat of_fd, of_match;
        int same_file_system = strcmp(call, "syncfs") == 0 && fstat(fd, &of_fd) == 0 &&
                               stat(match, &of_match) == 0 && of_fd.st_dev == of_match.st_dev;
        if (!same_file_system) return 0;
    }
    pthread_mutex_lock(&lock);
    int fail = access(trigger, F_OK) == 0;
    if (fail) {
        const char *once = getenv("FAILSYNC_ONCE");
        if (once && strcmp(once, "1") == 0) unlink(trigger);
        const char *log = getenv("FAILSYNC_LOG");
        if (log) {
            int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
            if (out >= 0) {
                dprintf(out, "%s %s\n", call, path);
                close(out);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return fail;
}

#define WRAP(name)                                                   \
    int name(int fd) {                                               \
        static int (*real)(int);                                     \
        if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #name);     \
        int saved = errno;                                           \
        int rc = real(fd);                                           \
        if (rc == 0 && should_fail(#name, fd)) {                     \
            errno = EIO;                                             \
            return -1;                                               \
        }                                                            \
        if (rc == 0) errno = saved;                                  \
        return rc;                                                   \
    }

WRAP(fsync)
WRAP(fdatasync)
WRAP(syncfs)
