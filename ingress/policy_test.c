/* policy_test: SPEC §3's Origin and Host rules and the key comparison. */
#include "policy.h"

#include "tests/support/check.h"

#include <string.h>

int main(void)
{
    policy_t p;
    char err[256];
    CHECK(policy_init(&p, "https://app.example.com, http://localhost:3000/", "127.0.0.1", NULL, 0,
                      err, sizeof err) == 0);
    CHECK(p.norigins == 2 && p.check_host);

    /* No Origin (curl, SDKs): allowed. */
    CHECK(policy_origin_ok(&p, NULL, "127.0.0.1:8080"));
    /* Our own origin: http(s):// + the Host the request went to. */
    CHECK(policy_origin_ok(&p, "http://127.0.0.1:8080", "127.0.0.1:8080"));
    CHECK(policy_origin_ok(&p, "HTTP://LOCALHOST:8080", "localhost:8080"));
    CHECK(!policy_origin_ok(&p, "http://127.0.0.1:9999", "127.0.0.1:8080"));
    /* Allowed ones, case-insensitive, a trailing slash ignored. */
    CHECK(policy_origin_ok(&p, "https://APP.example.com", "127.0.0.1:8080"));
    CHECK(policy_origin_ok(&p, "http://localhost:3000", "127.0.0.1:8080"));
    /* Foreign, null, and look-alikes: refused. */
    CHECK(!policy_origin_ok(&p, "https://evil.example", "127.0.0.1:8080"));
    CHECK(!policy_origin_ok(&p, "null", "127.0.0.1:8080"));
    CHECK(!policy_origin_ok(&p, "https://app.example.com.evil", "127.0.0.1:8080"));
    CHECK(!policy_origin_ok(&p, "http://127.0.0.1:8080", NULL));
    CHECK(!policy_origin_ok(&p, "ftp://127.0.0.1:8080", "127.0.0.1:8080"));

    /* Host without a key: loopback names and the listen address only. */
    CHECK(policy_host_ok(&p, NULL));
    CHECK(policy_host_ok(&p, "127.0.0.1:8080"));
    CHECK(policy_host_ok(&p, "localhost"));
    CHECK(policy_host_ok(&p, "LocalHost:1"));
    CHECK(policy_host_ok(&p, "[::1]:8080"));
    CHECK(!policy_host_ok(&p, "evil.example:8080"));
    CHECK(!policy_host_ok(&p, "127.0.0.1.evil.example"));
    CHECK(!policy_host_ok(&p, "localhost.evil"));
    CHECK(!policy_host_ok(&p, "[::1"));

    /* With a key, any Host; the key compared exactly. */
    CHECK(policy_init(&p, NULL, "0.0.0.0", "s3cret", 0, err, sizeof err) == 0);
    CHECK(!p.check_host && policy_host_ok(&p, "evil.example"));
    CHECK(policy_key_ok(&p, "s3cret", 6));
    CHECK(!policy_key_ok(&p, "s3cre", 5));
    CHECK(!policy_key_ok(&p, "s3cretX", 7));
    CHECK(!policy_key_ok(&p, "S3cret", 6));
    CHECK(!policy_key_ok(&p, "", 0));
    CHECK(!policy_key_ok(&p, "s3cret\0", 7));
    CHECK(policy_bearer_ok(&p, "Bearer s3cret"));
    CHECK(!policy_bearer_ok(&p, "bearer s3cret"));
    CHECK(!policy_bearer_ok(&p, "Bearer s3cre"));
    CHECK(!policy_bearer_ok(&p, NULL));
    /* No key: everything passes the key check; --allow-remote: no Host check. */
    CHECK(policy_init(&p, NULL, "0.0.0.0", NULL, 1, err, sizeof err) == 0);
    CHECK(policy_key_ok(&p, "x", 1) && policy_bearer_ok(&p, NULL) && policy_host_ok(&p, "any"));

    /* A bad origin list is one clear error. */
    CHECK(policy_init(&p, "app.example.com", "127.0.0.1", NULL, 0, err, sizeof err) == -1);
    CHECK(strstr(err, "MAP_ALLOWED_ORIGINS") != NULL);
    printf("policy_test: ok\n");
    return 0;
}
