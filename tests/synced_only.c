/* A power cut, simulated: keeps, per file of a watched directory, only what was synced.
 *
 * Loaded with LD_PRELOAD into `shop run` by tests/e2e/test_power_cut.py. SYNCED_ONLY_DIR names the
 * watched directory (the shop's data dir), SYNCED_ONLY_SHADOW another one that starts as a copy of
 * it. On every fsync or fdatasync of a file in the watched directory, the file's current content is
 * copied into the shadow first (under the name the disk has for it), then the real call runs. After
 * a SIGKILL the shadow is what a power cut at that instant would have left on the disk: the content
 * each file had at its last sync, and nothing written since.
 *
 * Directory entries follow POSIX, not ext4's kindness: names change on the disk only when their
 * directory is synced. A file created since (SQLite's -wal, a secret written and renamed into place)
 * has its synced content held apart (SYNCED_ONLY_SHADOW/.pending/<inode>) until then; a directory
 * sync gives new and renamed names their file's synced content (none: an empty file) and removes
 * the names that went.
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

/* The names whose directory entry is durable, with the inode each names. The content of an inode
 * synced while no durable name had it waits in SYNCED_ONLY_SHADOW/.pending/<inode>. */
static struct { char name[NAME_MAX + 1]; ino_t ino; } durable[MAX_FILES];
static int n_durable;

static int find(const char *name) {
    for (int i = 0; i < n_durable; i++)
        if (strcmp(durable[i].name, name) == 0) return i;
    return -1;
}

static int find_inode(ino_t ino) {
    for (int i = 0; i < n_durable; i++)
        if (durable[i].ino == ino) return i;
    return -1;
}

static void set_durable(const char *name, ino_t ino) {
    int i = find(name);
    if (i < 0) {
        if (n_durable == MAX_FILES) abort();  /* more files than a data dir has: say so loudly */
        i = n_durable++;
        snprintf(durable[i].name, sizeof durable[i].name, "%s", name);
    }
    durable[i].ino = ino;
}

static void join(char *out, const char *dir, const char *name) {
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

static int skipped(const char *name) {
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
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
            if (stat(path, &st) == 0) set_durable(e->d_name, st.st_ino);
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

static void pending_path(char *out, ino_t ino) {
    snprintf(out, PATH_MAX, "%s/.pending/%llu", shadow, (unsigned long long)ino);
}

static void copy_file(const char *src, const char *dir, const char *name) {
    int in = open(src, O_RDONLY);
    if (in < 0) abort();
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", in);
    copy_into(link, dir, name);
    close(in);
}

/* The directory's entries become what the disk has: new names (a file created or renamed since)
 * with what of their file was synced, or empty if nothing was; removed names gone. */
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
        int i = find(e->d_name);
        if (i >= 0 && durable[i].ino == st.st_ino) continue;
        join(dst, shadow, e->d_name);
        int other = find_inode(st.st_ino);
        pending_path(src, st.st_ino);
        if (other >= 0) {  /* renamed: the content its old name had on the disk */
            join(src, shadow, durable[other].name);
            copy_file(src, shadow, e->d_name);
        } else if (access(src, F_OK) == 0) {
            rename(src, dst);
        } else {
            int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) abort();
            close(fd);
        }
        set_durable(e->d_name, st.st_ino);
    }
    closedir(d);
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
        struct stat st;
        if (strncmp(path, watched, len) == 0 && path[len] == '/' && !strchr(path + len + 1, '/')
            && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            /* The content goes where the disk's durable name for this file is, or waits for one. */
            int i = find_inode(st.st_ino);
            if (i >= 0) {
                copy_into(link, shadow, durable[i].name);
            } else {
                char dir[PATH_MAX], name[32];
                join(dir, shadow, ".pending");
                snprintf(name, sizeof name, "%llu", (unsigned long long)st.st_ino);
                copy_into(link, dir, name);
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
