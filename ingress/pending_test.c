/* pending_test: requests are found by id, listed per connection, freed
 * with their connection's transaction, expire at their deadline, and the
 * bounds hold. */
#include "pending.h"

#include "conn.h"
#include "tests/support/check.h"

int main(void)
{
    pending_reg_t *r = pending_new(4, 2);
    conn_t *a = conn_new(1, NULL, 1024, 0), *b = conn_new(2, NULL, 1024, 0);
    CHECK(!pending_full(r, a));
    pending_t *p1 = pending_add(r, 1, P_HTTP, a, 500);
    pending_t *p2 = pending_add(r, 2, P_WS_FILL, a, 0);
    CHECK(p1 && p2 && a->npending == 2 && a->pendings == p2 && p2->cnext == p1);
    CHECK(pending_full(r, a)); /* two per connection */
    CHECK(!pending_full(r, b));
    pending_t *w = pending_add(r, 3, P_WATCH, NULL, 0);
    CHECK(w && !w->conn);
    CHECK(pending_get(r, 2) == p2 && pending_get(r, 9) == NULL);
    CHECK(pending_count(r) == 3);

    pending_t *out[4];
    CHECK(pending_expired(r, 499, out, 4) == 0);
    CHECK(pending_expired(r, 500, out, 4) == 1 && out[0] == p1);

    pending_free(r, p1);
    CHECK(a->npending == 1 && a->pendings == p2 && !p2->cnext);
    CHECK(!pending_full(r, a));
    pending_add(r, 4, P_HTTP, b, 0);
    CHECK(pending_full(r, NULL) == 0 && pending_count(r) == 3);
    pending_add(r, 5, P_HTTP, b, 0);
    CHECK(pending_full(r, NULL)); /* four in all */
    /* Freeing a connection's requests one by one empties its list. */
    while (b->pendings)
        pending_free(r, b->pendings);
    CHECK(b->npending == 0 && pending_count(r) == 2);
    pending_destroy(&r);
    CHECK(r == NULL);
    pending_destroy(&r); /* NULL-safe */
    conn_destroy(&a);
    conn_destroy(&b);
    printf("pending_test: ok\n");
    return 0;
}
