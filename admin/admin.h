/* admin: what map-admin does to the orchestrator's database, without the
 * command line: an online backup, and a check of a database file.
 *
 *   admin_backup_stats_t s;
 *   if (admin_backup("/var/lib/map/map.db", "/backup/map.db", NULL, &s, err, sizeof err) != 0)
 *       ... one sentence in err
 *   admin_check_t c;
 *   if (admin_check("/backup/map.db", &c, err, sizeof err) != 0) ... damaged, or not ours
 */
#ifndef MAP_ADMIN_H
#define MAP_ADMIN_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int step_pages;     /* pages copied per sqlite3_backup_step (default 256) */
    int step_sleep_ms;  /* pause between steps (default 1), so other I/O goes on */
} admin_backup_opts_t;

typedef struct {
    int64_t pages;      /* pages in the copy */
    int64_t bytes;      /* size of the copy */
    int64_t steps;      /* sqlite3_backup_step calls */
    int64_t restarts;   /* times the copy had to start again (0: one snapshot) */
    int64_t ms;         /* wall time of the copy */
} admin_backup_stats_t;

/* Copies the database db to the new file dest while other processes (the
 * orchestrator) keep writing: SQLite's online backup in steps of
 * step_pages, all read from one snapshot (a read transaction held for the
 * whole copy: in WAL mode it never blocks a writer, and the copy is the
 * database as of its start). The copy is written to dest.partial, switched
 * to a rollback journal (one self-contained file), synced, then renamed to
 * dest. dest must not exist. opts NULL: the defaults. Blocking. Returns 0
 * (OUT stats, may be NULL), or -1 with one sentence in err (no file is left
 * at dest). */
int admin_backup(const char *db, const char *dest, const admin_backup_opts_t *opts,
                 admin_backup_stats_t *stats, char *err, size_t errlen);

typedef struct {
    int schema_version;   /* PRAGMA user_version */
    int older;            /* 1: older than this build's (the orchestrator migrates it at start) */
    int64_t runs;         /* rows in runs */
    int64_t events;       /* rows in events */
    int64_t bytes;        /* page_count × page_size */
} admin_check_t;

/* Verifies a database read-only: it opens, PRAGMA integrity_check says ok,
 * its schema version is one this build knows (1 to STORE_SCHEMA_VERSION;
 * the orchestrator migrates older ones at start) and it has every table.
 * Blocking (integrity_check reads every page: seconds per GB). Returns 0
 * (OUT out, may be NULL), or -1 with one sentence in err naming the file
 * and what is wrong. */
int admin_check(const char *db, admin_check_t *out, char *err, size_t errlen);

#endif
