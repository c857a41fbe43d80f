/* log: one stderr line per event worth knowing.
 *
 *   2026-11-24T10:00:00.123Z W broker[4242] frame.reject peer=7f01 reason=truncated
 *
 * Time, level, component[pid], a stable tag, then key=value pairs. With JSON
 * output on, the same as one JSON object per line. The level is tested before
 * anything is formatted. */
#ifndef MAP_LOG_H
#define MAP_LOG_H

/* Not LOG_INFO & co: <syslog.h> (pulled in by czmq) defines those. */
typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

extern log_level_t log_threshold;

void log_init(const char *component);
/* Parses "debug", "info", "warn", "error". Returns 0, or -1 when unknown. */
int log_set_level(const char *name);
void log_set_json(int on);
/* tag: stable dotted name; fmt: "key=value ..." pairs. */
void log_write(log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG(level, tag, ...)                                                   \
    do {                                                                       \
        if ((level) >= log_threshold)                                          \
            log_write((level), (tag), __VA_ARGS__);                            \
    } while (0)
#define LOGD(tag, ...) LOG(LOG_LEVEL_DEBUG, tag, __VA_ARGS__)
#define LOGI(tag, ...) LOG(LOG_LEVEL_INFO, tag, __VA_ARGS__)
#define LOGW(tag, ...) LOG(LOG_LEVEL_WARN, tag, __VA_ARGS__)
#define LOGE(tag, ...) LOG(LOG_LEVEL_ERROR, tag, __VA_ARGS__)

#endif
