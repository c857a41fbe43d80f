/* echo: jobs, the FIFO timer queue and word splitting (see echo.h).
 *
 * A job owns a copy of its input content (the request body is valid only
 * during on_request) and a read position; the delta and done bodies are
 * encoded into one buffer reused by every job. Jobs live in an hmap by id
 * (cancel is O(1)) and on a doubly linked FIFO ordered by due time. */
#include "echo.h"

#include "common/hmap.h"
#include "common/mem.h"
#include "proto/agent.h"

#include <string.h>

typedef struct s_job_t {
    uint64_t id;
    char *text;              /* input content, len bytes, owned */
    size_t len;
    size_t pos;              /* bytes emitted as deltas */
    int64_t due;             /* mono ms of the next step */
    unsigned retries;        /* refused sends in a row */
    struct s_job_t *prev, *next; /* FIFO links */
} s_job_t;

struct echo_t {
    long delay_ms;
    long step_ms;            /* delay_ms, or ECHO_RETRY_MS with delay 0 */
    hmap_t *jobs;            /* id → s_job_t */
    s_job_t *head, *tail;    /* FIFO by due */
    mp_buf_t out;            /* body being sent */
    echo_sink_t sink;
    void *arg;
    echo_stats_t stats;
};

static int s_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t echo_next_delta(const char *text, size_t len, size_t pos)
{
    while (pos < len && s_is_space(text[pos]))
        pos++;
    while (pos < len && !s_is_space(text[pos]))
        pos++;
    return pos;
}

echo_t *echo_new(long delay_ms, size_t jobs_max, size_t body_max, const echo_sink_t *sink,
                 void *arg)
{
    echo_t *self = mem_alloc(sizeof *self);
    self->delay_ms = delay_ms > 0 ? delay_ms : 0;
    self->step_ms = delay_ms > 0 ? delay_ms : ECHO_RETRY_MS;
    self->jobs = hmap_new(jobs_max ? jobs_max : 1);
    mp_buf_init(&self->out, body_max);
    self->sink = *sink;
    self->arg = arg;
    return self;
}

static void s_unlink(echo_t *self, s_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else if (self->head == job)
        self->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else if (self->tail == job)
        self->tail = job->prev;
    job->prev = job->next = NULL;
}

static void s_push(echo_t *self, s_job_t *job, int64_t due)
{
    job->due = due;
    job->prev = self->tail;
    job->next = NULL;
    if (self->tail)
        self->tail->next = job;
    else
        self->head = job;
    self->tail = job;
}

/* Removes a job from both indexes and frees it. */
static void s_free(echo_t *self, s_job_t *job)
{
    s_unlink(self, job);
    hmap_del(self->jobs, job->id);
    mem_free(job->text);
    mem_free(job);
}

void echo_destroy(echo_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    echo_t *self = *self_p;
    while (self->head)
        s_free(self, self->head);
    hmap_destroy(&self->jobs);
    mp_buf_free(&self->out);
    mem_free(self);
    *self_p = NULL;
}

/* A send was refused: 0 to try again later, 1 when the job was failed. */
static int s_refused(echo_t *self, s_job_t *job)
{
    if (++job->retries <= ECHO_RETRIES_MAX)
        return 0;
    self->sink.fail(self->arg, job->id, "internal", "the echo could not send (queue full)");
    self->stats.failed++;
    return 1;
}

/* Sends what the job may send now. Returns 1 when the job is over. */
static int s_step(echo_t *self, s_job_t *job)
{
    while (job->pos < job->len) {
        size_t end = echo_next_delta(job->text, job->len, job->pos);
        mp_buf_reset(&self->out);
        if (agent_encode_delta(&self->out, job->text + job->pos, end - job->pos) != 0) {
            self->sink.fail(self->arg, job->id, "too_large", "a delta is over the body maximum");
            self->stats.failed++;
            return 1;
        }
        if (self->sink.stream(self->arg, job->id, self->out.data, self->out.len) != 0)
            return s_refused(self, job);
        job->pos = end;
        job->retries = 0;
        if (self->delay_ms > 0 && job->pos < job->len)
            return 0; /* one delta per tick */
    }
    mp_buf_reset(&self->out);
    if (agent_encode_done(&self->out, "assistant", job->text, job->len) != 0) {
        self->sink.fail(self->arg, job->id, "too_large", "the output is over the body maximum");
        self->stats.failed++;
        return 1;
    }
    if (self->sink.reply(self->arg, job->id, self->out.data, self->out.len) != 0)
        return s_refused(self, job);
    self->stats.served++;
    return 1;
}

int echo_start(echo_t *self, uint64_t id, const void *body, size_t len, int64_t now_ms)
{
    agent_invoke_t inv;
    agent_err_t err = agent_decode_invoke(body, len, &inv);
    if (err != AGENT_OK) {
        self->sink.fail(self->arg, id, "bad_request", agent_strerror(err));
        self->stats.failed++;
        return -1;
    }
    if (hmap_get(self->jobs, id))
        return -1; /* the running job owns this id: answering would end it */
    s_job_t *job = mem_alloc(sizeof *job);
    job->id = id;
    job->len = inv.input.content.len;
    job->text = mem_alloc(job->len ? job->len : 1);
    memcpy(job->text, inv.input.content.ptr, job->len);
    if (hmap_put(self->jobs, id, job) != 0) {
        mem_free(job->text);
        mem_free(job);
        self->sink.fail(self->arg, id, "overloaded", "the echo runs too many invokes");
        self->stats.failed++;
        return -1;
    }
    self->stats.started++;
    s_push(self, job, now_ms + self->delay_ms);
    if (self->delay_ms == 0) {
        s_unlink(self, job);
        if (s_step(self, job))
            s_free(self, job);
        else
            s_push(self, job, now_ms + self->step_ms);
    }
    return 0;
}

int echo_cancel(echo_t *self, uint64_t id)
{
    s_job_t *job = hmap_get(self->jobs, id);
    if (!job)
        return -1;
    s_free(self, job);
    self->stats.cancelled++;
    return 0;
}

void echo_run(echo_t *self, int64_t now_ms)
{
    /* Jobs pushed back are due at now + step > now: the loop ends. */
    while (self->head && self->head->due <= now_ms) {
        s_job_t *job = self->head;
        s_unlink(self, job);
        if (s_step(self, job))
            s_free(self, job);
        else
            s_push(self, job, now_ms + self->step_ms);
    }
}

long echo_timeout_ms(const echo_t *self, int64_t now_ms)
{
    if (!self->head)
        return -1;
    return self->head->due > now_ms ? (long)(self->head->due - now_ms) : 0;
}

size_t echo_fail_all(echo_t *self, const char *code, const char *message)
{
    size_t count = 0;
    while (self->head) {
        s_job_t *job = self->head;
        self->sink.fail(self->arg, job->id, code, message);
        self->stats.failed++;
        s_free(self, job);
        count++;
    }
    return count;
}

size_t echo_jobs(const echo_t *self)
{
    return hmap_size(self->jobs);
}

void echo_stats(const echo_t *self, echo_stats_t *out)
{
    *out = self->stats;
}
