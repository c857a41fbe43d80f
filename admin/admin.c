/* admin: online backup and check of the orchestrator's SQLite database.
 *
 * Backup, and why it is built this way:
 *   - sqlite3_backup_step copies a few pages at a time. Between two steps
 *     SQLite normally lets go of its snapshot, and when another process
 *     writes in between (the orchestrator commits every loop turn) the next
 *     step starts the copy again from page 1: under steady load a stepped
 *     backup of a large file may never finish. So the source connection
 *     opens one read transaction first and holds it to the end: every step
 *     reads the same snapshot, nothing restarts (stats.restarts counts it if
 *     it ever does), and the copy is exactly the database as of that moment.
 *   - The store runs in WAL mode, where a reader never blocks a writer: the
 *     orchestrator goes on committing while the copy is made. What the held
 *     snapshot costs is the WAL: checkpoints cannot pass it, so the -wal file
 *     grows during the copy and is checkpointed once it ends.
 *   - The copy goes to dest.partial and is renamed only once it is whole,
 *     synced and switched to journal_mode DELETE (no -wal beside it: one
 *     file to move, check and restore). A failed backup leaves no dest.
 *
 * Check: read-only (SQLITE_OPEN_READONLY; a live database too), full
 * integrity_check, then the schema version and the tables. */
#include "admin.h"

#include "orchestrator/store.h" /* STORE_SCHEMA_VERSION: the schema this build knows */

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_RESTARTS_MAX 100   /* a copy that starts again this often gives up */
#define S_BUSY_MAX 10000     /* busy/locked steps in a row before giving up */

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A regular file at path, or -1 with the reason in err. */
static int s_is_file(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "'%s': %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "'%s' is not a regular file", path);
        return -1;
    }
    return 0;
}

static int s_open_ro(const char *path, sqlite3 **db, char *err, size_t errlen)
{
    if (s_is_file(path, err, errlen) != 0)
        return -1;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "'%s': cannot open: %s", path, *db ? sqlite3_errmsg(*db) : "no memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

/* One integer from a query, or -1 with err. */
static int s_int(sqlite3 *db, const char *path, const char *sql, int64_t *out, char *err,
                 size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return 0;
    }
    snprintf(err, errlen, "'%s': %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

static int s_fsync_path(const char *path, int directory)
{
    int fd = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies src (with its snapshot held) into the open destination. */
static int s_copy(sqlite3 *src, sqlite3 *dst, const char *db, const admin_backup_opts_t *o,
                  admin_backup_stats_t *st, char *err, size_t errlen)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "backup of '%s': %s", db, sqlite3_errmsg(dst));
        return -1;
    }
    int rc, busy = 0;
    int last_remaining = -1;
    for (;;) {
        rc = sqlite3_backup_step(b, o->step_pages);
        st->steps++;
        int remaining = sqlite3_backup_remaining(b);
        if (last_remaining >= 0 && remaining > last_remaining)
            st->restarts++;
        last_remaining = remaining;
        if (rc == SQLITE_DONE)
            break;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            if (++busy > S_BUSY_MAX)
                break;
        } else if (rc != SQLITE_OK) {
            break;
        } else {
            busy = 0;
        }
        if (st->restarts > S_RESTARTS_MAX)
            break;
        if (o->step_sleep_ms > 0)
            sqlite3_sleep(o->step_sleep_ms);
    }
    st->pages = sqlite3_backup_pagecount(b);
    int frc = sqlite3_backup_finish(b);
    if (rc == SQLITE_DONE && frc == SQLITE_OK)
        return 0;
    if (st->restarts > S_RESTARTS_MAX)
        snprintf(err, errlen, "backup of '%s': the copy started again %d times, giving up", db,
                 S_RESTARTS_MAX);
    else
        snprintf(err, errlen, "backup of '%s': %s", db, sqlite3_errstr(rc == SQLITE_DONE ? frc : rc));
    return -1;
}

int admin_backup(const char *db, const char *dest, const admin_backup_opts_t *opts,
                 admin_backup_stats_t *stats, char *err, size_t errlen)
{
    admin_backup_opts_t o = {.step_pages = 256, .step_sleep_ms = 1};
    if (opts) {
        if (opts->step_pages > 0)
            o.step_pages = opts->step_pages;
        o.step_sleep_ms = opts->step_sleep_ms >= 0 ? opts->step_sleep_ms : 0;
    }
    admin_backup_stats_t st = {0};
    int64_t t0 = s_now_ms();
    err[0] = '\0';
    struct stat sb;
    if (lstat(dest, &sb) == 0) {
        snprintf(err, errlen, "'%s' already exists: remove it or choose another path", dest);
        return -1;
    }
    char partial[4096];
    if ((size_t)snprintf(partial, sizeof partial, "%s.partial", dest) >= sizeof partial) {
        snprintf(err, errlen, "the backup path is too long");
        return -1;
    }
    sqlite3 *src = NULL, *dst = NULL;
    int result = -1;
    if (s_open_ro(db, &src, err, errlen) != 0)
        return -1;
    /* The snapshot every step reads: BEGIN, then a read starts it. */
    int64_t tables;
    if (sqlite3_exec(src, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        s_int(src, db, "SELECT count(*) FROM sqlite_schema", &tables, err, errlen) != 0) {
        if (!*err)
            snprintf(err, errlen, "'%s': %s", db, sqlite3_errmsg(src));
        goto done;
    }
    unlink(partial); /* a leftover of an interrupted backup */
    if (sqlite3_open_v2(partial, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "'%s': cannot create: %s", partial,
                 dst ? sqlite3_errmsg(dst) : "no memory");
        goto done;
    }
    if (s_copy(src, dst, db, &o, &st, err, errlen) != 0)
        goto done;
    if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "'%s': %s", partial, sqlite3_errmsg(dst));
        goto done;
    }
    int64_t bytes;
    if (s_int(dst, partial, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
              &bytes, err, errlen) != 0)
        goto done;
    st.bytes = bytes;
    sqlite3_close(dst);
    dst = NULL;
    /* The dest directory for the rename's fsync. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", dest);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (s_fsync_path(partial, 0) != 0 || rename(partial, dest) != 0 || s_fsync_path(dir, 1) != 0) {
        snprintf(err, errlen, "'%s': %s", dest, strerror(errno));
        goto done;
    }
    st.ms = s_now_ms() - t0;
    if (stats)
        *stats = st;
    result = 0;
done:
    if (dst)
        sqlite3_close(dst);
    if (result != 0) {
        unlink(partial);
        char journal[4200];
        snprintf(journal, sizeof journal, "%s-journal", partial);
        unlink(journal);
    }
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(src);
    return result;
}

typedef struct {
    char first[512];   /* the first problem integrity_check named */
    int64_t problems;  /* lines other than "ok" */
} s_verdict_t;

int admin_check(const char *db, admin_check_t *out, char *err, size_t errlen)
{
    sqlite3 *h = NULL;
    if (s_open_ro(db, &h, err, errlen) != 0)
        return -1;
    int result = -1;
    admin_check_t c = {0};
    int64_t v;
    /* A file that is not a database fails on its first read: say so. */
    if (s_int(h, db, "PRAGMA user_version", &v, err, errlen) != 0) {
        snprintf(err, errlen, "'%s' is not a database or is damaged: %s", db, sqlite3_errmsg(h));
        goto done;
    }
    c.schema_version = (int)v;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check(100)", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "'%s' is damaged: %s", db, sqlite3_errmsg(h));
        goto done;
    }
    s_verdict_t verdict = {{0}, 0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (line && strcmp(line, "ok") == 0)
            continue;
        if (verdict.problems++ == 0)
            snprintf(verdict.first, sizeof verdict.first, "%s", line ? line : "(null)");
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "'%s' is damaged: integrity_check stopped: %s", db, sqlite3_errmsg(h));
        sqlite3_finalize(st);
        goto done;
    }
    sqlite3_finalize(st);
    if (verdict.problems) {
        snprintf(err, errlen, "'%s' is damaged: integrity_check found %lld problem%s%s, the first: %s",
                 db, (long long)verdict.problems, verdict.problems == 1 ? "" : "s",
                 verdict.problems >= 100 ? " or more" : "", verdict.first);
        goto done;
    }
    if (c.schema_version > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "'%s' has schema version %d, newer than this build's %d (a newer map-admin reads it)",
                 db, c.schema_version, STORE_SCHEMA_VERSION);
        goto done;
    }
    int64_t tables;
    if (s_int(h, db,
              "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
              "('sessions', 'runs', 'events', 'messages', 'agents')",
              &tables, err, errlen) != 0)
        goto done;
    if (c.schema_version < 1 || tables != 5) {
        snprintf(err, errlen,
                 "'%s' is not a map database (schema version %d, %lld of the 5 tables)", db,
                 c.schema_version, (long long)tables);
        goto done;
    }
    if (s_int(h, db, "SELECT count(*) FROM runs", &c.runs, err, errlen) != 0 ||
        s_int(h, db, "SELECT count(*) FROM events", &c.events, err, errlen) != 0 ||
        s_int(h, db, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
              &c.bytes, err, errlen) != 0)
        goto done;
    c.older = c.schema_version < STORE_SCHEMA_VERSION;
    if (out)
        *out = c;
    result = 0;
done:
    sqlite3_close(h);
    return result;
}
