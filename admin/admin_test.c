/* admin_test: backup and check against real databases in a temporary
 * directory: a copy made while another connection keeps committing is whole
 * and consistent, every refusal names its reason, a damaged, foreign or
 * newer file fails the check. */
#include "admin.h"

#include "orchestrator/store.h"
#include "tests/support/check.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[] = "/tmp/map-admin-test-XXXXXX";

static void s_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", s_dir, name);
}

static int s_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* One ended run of n events in its own transaction. */
static void s_run(store_t *st, int i, int n)
{
    char id[64], payload[256];
    snprintf(id, sizeof id, "run_%06d", i);
    memset(payload, 'x', sizeof payload);
    snprintf(payload, 8, "\"%04d", i % 10000);
    payload[200] = '"';
    payload[201] = '\0';
    const char *t = "2026-11-24T10:00:00.123Z";
    CHECK(store_begin(st) == 0);
    CHECK(store_session_ensure(st, "s1", t) == 0);
    CHECK(store_run_insert(st, id, "s1", "echo", NULL, "user", "hi", 2, t) == 0);
    for (int seq = 1; seq <= n; seq++) {
        int64_t e;
        CHECK(store_event_append(st, id, (uint64_t)seq, seq == n ? "run_done" : "agent_stream_delta",
                                 payload, t, &e) == 0);
    }
    CHECK(store_run_set_status(st, id, "done", t) == 0);
    CHECK(store_commit(st) == 0);
}

static store_t *s_store(const char *name, int runs)
{
    char path[256], err[512];
    s_path(path, sizeof path, name);
    store_t *st = store_new(path, STORE_NORMAL, err, sizeof err);
    CHECK(st);
    for (int i = 0; i < runs; i++)
        s_run(st, i, 20);
    return st;
}

static long long s_count(const char *path, const char *sql)
{
    sqlite3 *db;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *q;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

typedef struct {
    store_t *st;
    atomic_int stop;
    atomic_int committed;  /* runs committed so far */
} s_writer_t;

static void *s_writer(void *arg)
{
    s_writer_t *w = arg;
    for (int i = 1000; !atomic_load(&w->stop) && i < 1000 + 100000; i++) {
        s_run(w->st, i, 20);
        atomic_store(&w->committed, i - 1000 + 1);
    }
    return NULL;
}

/* A copy made in 1-page steps while another connection commits a run every
 * few hundred microseconds: one snapshot (no restart), every run committed
 * before it started, each whole, and it passes the check as one file. */
static void test_backup_while_writing(void)
{
    store_t *st = s_store("live.db", 300);
    char src[256], dst[256], wal[300];
    s_path(src, sizeof src, "live.db");
    s_path(dst, sizeof dst, "copy.db");
    s_writer_t w = {.st = st};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, s_writer, &w) == 0);
    while (atomic_load(&w.committed) < 20)
        usleep(1000);
    int at_start = atomic_load(&w.committed), before = 300 + at_start;
    admin_backup_opts_t o = {.step_pages = 1, .step_sleep_ms = 1};
    admin_backup_stats_t bs;
    char err[1024];
    int rc = admin_backup(src, dst, &o, &bs, err, sizeof err);
    int during = atomic_load(&w.committed);
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    int total = atomic_load(&w.committed);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CHECK(rc == 0);
    CHECK(during > at_start); /* the writer went on while the copy was made */
    CHECK(bs.restarts == 0 && bs.pages > 100 && bs.steps >= bs.pages);
    CHECK(bs.bytes == bs.pages * 4096);
    snprintf(wal, sizeof wal, "%s-wal", dst);
    char partial[300];
    snprintf(partial, sizeof partial, "%s.partial", dst);
    CHECK(!s_exists(wal) && !s_exists(partial));
    admin_check_t c;
    rc = admin_check(dst, &c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CHECK(rc == 0 && c.schema_version == STORE_SCHEMA_VERSION && !c.older);
    CHECK(c.runs >= before && c.runs <= 300 + total && c.events == c.runs * 20);
    CHECK(s_count(dst, "SELECT count(*) FROM runs WHERE run_id < 'run_001000'") == 300);
    CHECK(s_count(dst, "SELECT count(*) FROM runs r WHERE (SELECT count(*) FROM events e"
                       " WHERE e.run_id = r.run_id) != 20") == 0);
    CHECK(!s_exists(wal)); /* the check read it without making a WAL */
    /* The live database is unharmed and still writable. */
    s_run(st, 999999, 3);
    store_destroy(&st);
    CHECK(admin_check(src, &c, err, sizeof err) == 0);
    CHECK(c.runs == total + 300 + 1);
}

static void test_backup_refusals(void)
{
    char src[256], dst[256], err[1024];
    store_t *st = s_store("r.db", 3);
    store_destroy(&st);
    s_path(src, sizeof src, "r.db");
    /* dest exists: untouched. */
    s_path(dst, sizeof dst, "exists.db");
    FILE *f = fopen(dst, "w");
    CHECK(f && fputs("keep me", f) >= 0 && fclose(f) == 0);
    CHECK(admin_backup(src, dst, NULL, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "already exists"));
    CHECK(s_count(src, "SELECT count(*) FROM runs") == 3);
    f = fopen(dst, "r");
    char buf[16] = {0};
    CHECK(f && fread(buf, 1, sizeof buf - 1, f) == 7 && fclose(f) == 0 && !strcmp(buf, "keep me"));
    /* No source. */
    char missing[256];
    s_path(missing, sizeof missing, "missing.db");
    s_path(dst, sizeof dst, "out1.db");
    CHECK(admin_backup(missing, dst, NULL, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "missing.db") && strstr(err, "No such file"));
    CHECK(!s_exists(dst));
    /* A destination directory that does not exist. */
    s_path(dst, sizeof dst, "nodir/out.db");
    CHECK(admin_backup(src, dst, NULL, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "cannot create") && strstr(err, "nodir/out.db.partial"));
    /* A source that is a directory. */
    s_path(dst, sizeof dst, "out2.db");
    CHECK(admin_backup(s_dir, dst, NULL, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "not a regular file") && !s_exists(dst));
    /* The defaults work on a closed database (no -wal, no -shm). */
    CHECK(admin_backup(src, dst, NULL, NULL, err, sizeof err) == 0);
    CHECK(s_count(dst, "SELECT count(*) FROM runs") == 3);
}

static void s_write_at(const char *path, long off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, data, len, off) == (ssize_t)len && close(fd) == 0);
}

static void test_check_failures(void)
{
    char path[256], err[1024];
    admin_check_t c;
    /* Missing. */
    s_path(path, sizeof path, "nothing.db");
    CHECK(admin_check(path, &c, err, sizeof err) == -1 && strstr(err, "No such file"));
    /* Not a database. */
    s_path(path, sizeof path, "text.db");
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < 200; i++)
        fputs("this is not a database at all\n", f);
    CHECK(f && fclose(f) == 0);
    CHECK(admin_check(path, &c, err, sizeof err) == -1 && strstr(err, "not a database"));
    /* A SQLite database of somebody else's (no tables). */
    s_path(path, sizeof path, "foreign.db");
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(admin_check(path, &c, err, sizeof err) == -1);
    CHECK(strstr(err, "not a map database (schema version 0, 0 of the 5 tables)"));
    /* A newer schema. */
    store_t *st = s_store("newer.db", 1);
    store_destroy(&st);
    s_path(path, sizeof path, "newer.db");
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(admin_check(path, &c, err, sizeof err) == -1);
    CHECK(strstr(err, "schema version 99, newer than this build's"));
    /* Damaged pages in the middle of the file. */
    st = s_store("damaged.db", 200);
    store_destroy(&st);
    s_path(path, sizeof path, "damaged.db");
    CHECK(admin_check(path, &c, err, sizeof err) == 0 && c.runs == 200);
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 131 + 7);
    for (long page = 10; page < 40; page += 3)
        s_write_at(path, page * 4096 + 8, junk, 2000);
    CHECK(admin_check(path, &c, err, sizeof err) == -1);
    CHECK(strstr(err, "damaged.db' is damaged"));
}

int main(void)
{
    CHECK(mkdtemp(s_dir));
    test_backup_while_writing();
    test_backup_refusals();
    test_check_failures();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    printf("admin_test: ok\n");
    return 0;
}
