/* fanout: jobs of the fan-out agent (see fanout.h).
 *
 * A job is one invoke being served: the worker's request id, the handles of
 * its two calls (0 once a call ended) and each call's line once it ended.
 * Jobs live in an hmap by request id. A job ends in one of two ways: both
 * calls ended (the REPLY goes out) or the invoke was cancelled or failed
 * (`closing`: the calls still live are cancelled, and each cancel's on_end,
 * which call_cancel runs at once, frees the job with the last one). */
#include "fanout.h"

#include "common/hmap.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <stdio.h>
#include <string.h>

#define S_LINE_MAX 65536 /* bytes of one child's answer kept in the output */

typedef struct {
    struct fanout_t *owner;
    uint64_t id;
    uint64_t calls[FANOUT_CALLS]; /* live call handles; 0 once ended */
    char *lines[FANOUT_CALLS];    /* "cN: ..." once ended */
    size_t line_lens[FANOUT_CALLS];
    int closing;                  /* cancelled or failed: no answer */
} s_job_t;

struct fanout_t {
    worker_t *w;
    call_set_t *calls;
    char target[AGENT_ID_MAX + 1];
    hmap_t *jobs;                 /* request id → s_job_t */
    mp_buf_t out;
    fanout_stats_t stats;
};

static const char *const s_call_ids[FANOUT_CALLS] = {"c1", "c2"};

static int s_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t fanout_reverse_words(const char *text, size_t len, char *out, size_t cap)
{
    size_t n = 0, end = len;
    while (end > 0) {
        while (end > 0 && s_is_space(text[end - 1]))
            end--;
        size_t start = end;
        while (start > 0 && !s_is_space(text[start - 1]))
            start--;
        if (start == end)
            break;
        if (n > 0 && n + 1 < cap)
            out[n++] = ' ';
        size_t word = end - start;
        if (n + word >= cap)
            word = cap - 1 - n;
        memcpy(out + n, text + start, word);
        n += word;
        end = start;
    }
    out[n] = '\0';
    return n;
}

static void s_free_job(s_job_t *job)
{
    for (int i = 0; i < FANOUT_CALLS; i++)
        mem_free(job->lines[i]);
    mem_free(job);
}

static int s_live(const s_job_t *job)
{
    int n = 0;
    for (int i = 0; i < FANOUT_CALLS; i++)
        n += job->calls[i] != 0;
    return n;
}

/* Stops a job without an answer: its live calls are cancelled; the last
 * on_end frees it. The job is out of `jobs` already. */
static void s_close(fanout_t *self, s_job_t *job)
{
    job->closing = 1;
    if (s_live(job) == 0) {
        s_free_job(job);
        return;
    }
    for (int i = 0; i < FANOUT_CALLS; i++)
        if (job->calls[i])
            call_cancel(self->calls, job->calls[i]); /* may free job with the last */
}

static void s_answer(fanout_t *self, s_job_t *job)
{
    size_t total = 0;
    for (int i = 0; i < FANOUT_CALLS; i++)
        total += job->line_lens[i] + 1;
    char *text = mem_alloc(total + 1);
    size_t n = 0;
    for (int i = 0; i < FANOUT_CALLS; i++) {
        memcpy(text + n, job->lines[i], job->line_lens[i]);
        n += job->line_lens[i];
        if (i + 1 < FANOUT_CALLS)
            text[n++] = '\n';
    }
    mp_buf_reset(&self->out);
    if (agent_encode_done(&self->out, "assistant", text, n) != 0) {
        worker_fail(self->w, job->id, "too_large", "the merged answer is over the body maximum");
        self->stats.failed++;
    } else if (worker_reply(self->w, job->id, self->out.data, self->out.len) == 0) {
        self->stats.answered++;
    } else {
        LOGW("fanout.reply", "id=%llu error=not sent", (unsigned long long)job->id);
    }
    mem_free(text);
}

/* A child's line: its answer, or why there is none. */
static void s_line(s_job_t *job, int i, const call_end_t *end)
{
    char head[1024];
    size_t out_len = end->output_len < S_LINE_MAX ? end->output_len : S_LINE_MAX;
    int n;
    if (end->outcome == CALL_DONE)
        n = snprintf(head, sizeof head, "%s: ", s_call_ids[i]);
    else
        n = snprintf(head, sizeof head, "%s %s (%s: %s)", s_call_ids[i],
                     end->outcome == CALL_CANCELLED ? "cancelled" : "failed", end->code,
                     end->message);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof head)
        n = sizeof head - 1;
    size_t len = (size_t)n + (end->outcome == CALL_DONE ? out_len : 0);
    job->lines[i] = mem_alloc(len + 1);
    memcpy(job->lines[i], head, (size_t)n);
    if (end->outcome == CALL_DONE)
        memcpy(job->lines[i] + n, end->output, out_len);
    job->line_lens[i] = len;
}

static void s_on_end(call_set_t *c, uint64_t call, const call_end_t *end, void *user)
{
    s_job_t *job = user;
    fanout_t *self = job->owner;
    (void)c;
    int i = 0;
    while (i < FANOUT_CALLS && job->calls[i] != call)
        i++;
    if (i == FANOUT_CALLS)
        return;
    job->calls[i] = 0;
    if (job->closing) {
        if (s_live(job) == 0)
            s_free_job(job);
        return;
    }
    if (end->outcome != CALL_DONE) {
        self->stats.children_failed++;
        LOGI("fanout.child", "id=%llu call=%s child=%s outcome=%d code=%s",
             (unsigned long long)job->id, s_call_ids[i], end->child_run_id, (int)end->outcome,
             end->code);
    }
    s_line(job, i, end);
    /* Progress: the line as it ends, one delta. */
    char *delta = mem_alloc(job->line_lens[i] + 2);
    memcpy(delta, job->lines[i], job->line_lens[i]);
    delta[job->line_lens[i]] = '\n';
    mp_buf_reset(&self->out);
    if (agent_encode_delta(&self->out, delta, job->line_lens[i] + 1) == 0)
        worker_stream(self->w, job->id, self->out.data, self->out.len);
    mem_free(delta);
    if (s_live(job) > 0)
        return;
    hmap_del(self->jobs, job->id);
    s_answer(self, job);
    s_free_job(job);
}

fanout_t *fanout_new(worker_t *w, const char *target, size_t jobs_max)
{
    fanout_t *self = mem_alloc(sizeof *self);
    self->w = w;
    snprintf(self->target, sizeof self->target, "%s", target);
    self->jobs = hmap_new(jobs_max ? jobs_max : 1);
    call_handlers_t h = {.on_end = s_on_end};
    self->calls = call_set_new(w, &h, 0);
    mp_buf_init(&self->out, FRAME_BODY_MAX_DEFAULT);
    return self;
}

void fanout_destroy(fanout_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fanout_t *self = *self_p;
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->jobs, &pos, &key, &value) == 0)
        s_free_job(value);
    hmap_destroy(&self->jobs);
    call_set_destroy(&self->calls); /* frees the calls without callbacks */
    mp_buf_free(&self->out);
    mem_free(self);
    *self_p = NULL;
}

call_set_t *fanout_calls(fanout_t *self)
{
    return self->calls;
}

static void s_fail(fanout_t *self, uint64_t id, const char *code, const char *message)
{
    worker_fail(self->w, id, code, message);
    self->stats.failed++;
}

void fanout_on_request(fanout_t *self, uint64_t id, const uint8_t *body, size_t len)
{
    agent_invoke_t inv;
    agent_err_t err = agent_decode_invoke(body, len, &inv);
    if (err != AGENT_OK) {
        s_fail(self, id, "bad_request", agent_strerror(err));
        return;
    }
    if (inv.platform.token.len == 0) {
        s_fail(self, id, "bad_request", "the invoke carries no call token (platform)");
        return;
    }
    if (hmap_get(self->jobs, id))
        return; /* the running job owns this id */
    s_job_t *job = mem_alloc(sizeof *job);
    job->owner = self;
    job->id = id;
    if (hmap_put(self->jobs, id, job) != 0) {
        mem_free(job);
        s_fail(self, id, "overloaded", "the fanout agent runs too many invokes");
        return;
    }
    char run_id[AGENT_ID_MAX + 1], token[CALL_TOKEN_MAX + 1];
    snprintf(run_id, sizeof run_id, "%.*s", (int)inv.run_id.len, inv.run_id.ptr);
    snprintf(token, sizeof token, "%.*s", (int)inv.platform.token.len, inv.platform.token.ptr);
    size_t clen = inv.input.content.len;
    char *reversed = mem_alloc(clen + 1);
    size_t rlen = fanout_reverse_words(inv.input.content.ptr, clen, reversed, clen + 1);
    call_spec_t spec = {.run_id = run_id, .token = token, .agent_id = self->target};
    char why[256] = "";
    for (int i = 0; i < FANOUT_CALLS; i++) {
        spec.call_id = s_call_ids[i];
        spec.content = i == 0 ? inv.input.content.ptr : reversed;
        spec.content_len = i == 0 ? clen : rlen;
        job->calls[i] = call_start(self->calls, &spec, job, why, sizeof why);
        if (!job->calls[i])
            break;
    }
    mem_free(reversed);
    if (s_live(job) < FANOUT_CALLS) {
        hmap_del(self->jobs, id);
        char message[320];
        snprintf(message, sizeof message, "a call could not be made: %s", why);
        s_close(self, job);
        s_fail(self, id, "agent_error", message);
        return;
    }
    self->stats.started++;
}

void fanout_on_cancel(fanout_t *self, uint64_t id)
{
    s_job_t *job = hmap_del(self->jobs, id);
    if (!job)
        return;
    self->stats.cancelled++;
    LOGD("fanout.cancelled", "id=%llu", (unsigned long long)id);
    s_close(self, job);
}

size_t fanout_fail_all(fanout_t *self, const char *code, const char *message)
{
    size_t n = 0, pos = 0;
    uint64_t key;
    void *value;
    /* Collected first: closing a job changes the map. */
    size_t count = hmap_size(self->jobs);
    s_job_t **jobs = mem_alloc((count ? count : 1) * sizeof *jobs);
    while (n < count && hmap_next(self->jobs, &pos, &key, &value) == 0)
        jobs[n++] = value;
    for (size_t i = 0; i < n; i++) {
        hmap_del(self->jobs, jobs[i]->id);
        worker_fail(self->w, jobs[i]->id, code, message);
        s_close(self, jobs[i]);
    }
    mem_free(jobs);
    self->stats.failed += n;
    return n;
}

size_t fanout_jobs(const fanout_t *self)
{
    return hmap_size(self->jobs);
}

void fanout_stats(const fanout_t *self, fanout_stats_t *out)
{
    *out = self->stats;
}
