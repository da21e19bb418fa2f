/* A power cut, simulated: keeps, per file of a watched directory, only what was synced.
 *
 * Loaded with LD_PRELOAD into `shop run` by tests/e2e/test_power_cut.py. SYNCED_ONLY_DIR names the
 * watched directory (the shop's data dir), SYNCED_ONLY_SHADOW another one that starts as a copy of
 * it. On every fsync or fdatasync of a file in the watched directory, the file's current content is
 * copied into the shadow first (under the same name), then the real call runs. After a SIGKILL the
 * shadow is what a power cut at that instant would have left on the disk: the content each file had
 * at its last sync, and nothing written since.
 *
 * Directory entries follow POSIX, not ext4's kindness: a file created since the start (SQLite's
 * -wal) has its synced content held apart (SYNCED_ONLY_SHADOW/.pending) until its directory is
 * synced, as the name of a new file survives a power cut only then; a directory sync also makes
 * removals durable, and a name whose file was never synced comes back empty.
 *
 * Why C: SQLite syncs from inside libsqlite3 (fdatasync through its PLT) and Python's sqlite3 takes
 * no custom VFS, so there is no Python-level hook into those syncs; an interposed libc symbol sees
 * both them and Python's os.fsync/os.fdatasync. The test checks that with a probe before using it.
 */
#define _GNU_SOURCE
#include <dirent.h>
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

#define MAX_FILES 256

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static char watched[PATH_MAX];
static char shadow[PATH_MAX];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Names with the inode each names: those whose directory entry is durable, and those whose content
 * was synced while their entry was not (the copy waits in .pending). */
struct names { char name[NAME_MAX + 1]; ino_t ino; };
static struct names durable[MAX_FILES], pending[MAX_FILES];
static int n_durable, n_pending;

static int find(struct names *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return i;
    return -1;
}

static void set(struct names *t, int *n, const char *name, ino_t ino) {
    int i = find(t, *n, name);
    if (i < 0) {
        if (*n == MAX_FILES) abort();  /* more files than a data dir has: say so loudly */
        i = (*n)++;
        snprintf(t[i].name, sizeof t[i].name, "%s", name);
    }
    t[i].ino = ino;
}

static void join(char *out, const char *dir, const char *name) {
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

static int skipped(const char *name) {
    return name[0] == '.';  /* ".", "..", and nothing the shop makes */
}

__attribute__((constructor)) static void init(void) {
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char *w = getenv("SYNCED_ONLY_DIR"), *s = getenv("SYNCED_ONLY_SHADOW");
    if (!w || !s || !realpath(w, watched) || !realpath(s, shadow)) {
        watched[0] = 0;  /* not configured: a plain pass-through */
        return;
    }
    char pending[PATH_MAX];
    join(pending, shadow, ".pending");
    mkdir(pending, 0700);
    DIR *d = opendir(watched);
    if (!d) return;
    struct dirent *e;
    struct stat st;
    char path[PATH_MAX];
    while ((e = readdir(d)))
        if (!skipped(e->d_name)) {
            join(path, watched, e->d_name);
            if (stat(path, &st) == 0) set(durable, &n_durable, e->d_name, st.st_ino);
        }
    closedir(d);
}

/* Copy what the file open as fd holds into dir/name, atomically (a temporary file renamed): a SIGKILL
 * half-way through leaves the previous synced content in place, as a sync that never returned does.
 * The file is opened again for reading (fd may be write-only), through /proc/self/fd/N. */
static void copy_into(const char *link, const char *dir, const char *name) {
    char tmp[PATH_MAX], dst[PATH_MAX], buf[1 << 16];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, name);
    join(dst, dir, name);
    int in = open(link, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0) abort();  /* no copy would be a lie about what was synced */
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) abort();
    if (n < 0) abort();
    close(in);
    close(out);
    rename(tmp, dst);
}

static void directory_synced(void) {
    char path[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    struct stat st;
    DIR *d = opendir(watched);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (skipped(e->d_name)) continue;
        join(path, watched, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        int i = find(durable, n_durable, e->d_name);
        if (i >= 0 && durable[i].ino == st.st_ino) continue;
        /* A new name (or a name for a new file): it now survives, with what of that file was synced. */
        snprintf(src, sizeof src, "%s/.pending/%s", shadow, e->d_name);
        join(dst, shadow, e->d_name);
        int p = find(pending, n_pending, e->d_name);
        if (p >= 0 && pending[p].ino == st.st_ino) {
            rename(src, dst);
            pending[p] = pending[--n_pending];
        } else {
            int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) close(fd);
        }
        set(durable, &n_durable, e->d_name, st.st_ino);
    }
    closedir(d);
    /* Removals become durable too. */
    for (int i = 0; i < n_durable; i++) {
        join(path, watched, durable[i].name);
        if (access(path, F_OK) != 0) {
            join(dst, shadow, durable[i].name);
            unlink(dst);
            durable[i] = durable[--n_durable];
            i--;
        }
    }
}

static void capture(int fd) {
    if (!watched[0]) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    pthread_mutex_lock(&lock);
    if (strcmp(path, watched) == 0) {
        directory_synced();
    } else {
        size_t len = strlen(watched);
        const char *name = path + len + 1;
        struct stat st;
        if (strncmp(path, watched, len) == 0 && path[len] == '/' && !strchr(name, '/') && !skipped(name)
            && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            int i = find(durable, n_durable, name);
            if (i >= 0 && durable[i].ino == st.st_ino) {
                copy_into(link, shadow, name);
            } else {
                char dir[PATH_MAX];
                join(dir, shadow, ".pending");
                copy_into(link, dir, name);
                set(pending, &n_pending, name, st.st_ino);
            }
        }
    }
    pthread_mutex_unlock(&lock);
}

int fsync(int fd) {
    capture(fd);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    capture(fd);
    return real_fdatasync(fd);
}
