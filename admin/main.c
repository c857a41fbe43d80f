/* map-admin: operations on the orchestrator's database (admin.h).
 *
 *   map-admin backup PATH [--db DB]   a consistent copy of the live database
 *   map-admin check [--db DB]         integrity and schema of a database
 *
 * Exit: 0 done, 1 the operation failed (one line on stderr), 2 bad usage. */
#include "admin.h"

#include "common/flags.h"

#include <stdio.h>
#include <string.h>

static const char *s_usage =
    "usage: map-admin backup PATH [--db DB]   copy the live database to PATH (a new file)\n"
    "       map-admin check [--db DB]         verify a database (integrity, schema version)\n"
    "       map-admin COMMAND --help          the options of a command";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc < 2) {
            fprintf(stderr, "map-admin: a command is needed: backup or check (see --help)\n");
            return 2;
        }
        printf("map-admin: backup and check of the orchestrator's database\n\n%s\n", s_usage);
        return 0;
    }
    const char *cmd = argv[1];
    int backup = !strcmp(cmd, "backup");
    if (!backup && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "map-admin: unknown command '%s': backup or check (see --help)\n", cmd);
        return 2;
    }
    /* backup's PATH is the one positional argument; flags follow. */
    const char *path = NULL;
    int first_flag = 2;
    if (backup && argc > 2 && strncmp(argv[2], "--", 2) != 0) {
        path = argv[2];
        first_flag = 3;
    }
    const char *db = "./data/map.db";
    long step_pages = 256, step_sleep_ms = 1;
    flag_t table[] = {
        {"db", "MAP_DB", FLAG_STR, &db, 0, 0, "SQLite database"},
        {"step-pages", NULL, FLAG_INT, &step_pages, 1, 1000000, "backup: pages copied per step"},
        {"step-sleep-ms", NULL, FLAG_INT, &step_sleep_ms, 0, 1000, "backup: pause between steps"},
    };
    size_t nflags = backup ? 3 : 1;
    char *fargv[64];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    for (int a = first_flag; a < argc; a++) {
        if (fargc == (int)(sizeof fargv / sizeof *fargv)) {
            fprintf(stderr, "map-admin: too many arguments\n");
            return 2;
        }
        fargv[fargc++] = argv[a];
    }
    char about[512], err[1024];
    snprintf(about, sizeof about, "map-admin %s: %s\n\n%s", cmd,
             backup ? "a consistent copy of the live database (SQLite online backup)"
                    : "verifies a database: integrity_check, schema version, tables",
             s_usage);
    int rc = flags_parse(table, nflags, fargc, fargv, about, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc == 0 && backup && !path)
        snprintf(err, sizeof err, "backup needs the PATH of the copy (see --help)"), rc = -1;
    if (rc < 0) {
        fprintf(stderr, "map-admin: %s\n", err);
        return 2;
    }
    if (backup) {
        admin_backup_opts_t o = {.step_pages = (int)step_pages, .step_sleep_ms = (int)step_sleep_ms};
        admin_backup_stats_t st;
        if (admin_backup(db, path, &o, &st, err, sizeof err) != 0) {
            fprintf(stderr, "map-admin: %s\n", err);
            return 1;
        }
        printf("map-admin: backup of '%s' written to '%s': %lld pages, %lld bytes, %lld steps, "
               "%lld restarts, %lld ms\n",
               db, path, (long long)st.pages, (long long)st.bytes, (long long)st.steps,
               (long long)st.restarts, (long long)st.ms);
        return 0;
    }
    admin_check_t c;
    if (admin_check(db, &c, err, sizeof err) != 0) {
        fprintf(stderr, "map-admin: %s\n", err);
        return 1;
    }
    printf("map-admin: '%s' is ok: integrity ok, schema version %d%s, %lld runs, %lld events, "
           "%lld bytes\n",
           db, c.schema_version,
           c.older ? " (map-orchestrator migrates it at start)" : "",
           (long long)c.runs, (long long)c.events, (long long)c.bytes);
    return 0;
}
