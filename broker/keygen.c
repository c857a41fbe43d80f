/* map-keygen: a CURVE key pair for the broker or a peer. Prints the keys as
 * environment lines; with --cert DIR/NAME also writes NAME (public
 * certificate, the form the broker's --curve-allow directory holds) and
 * NAME_secret (the pair), with czmq's zcert. */
#include "common/flags.h"

#include <czmq.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *cert = NULL;
    flag_t table[] = {
        {"cert", NULL, FLAG_STR, &cert, 0, 0, "also write this certificate file (and its _secret)"},
    };
    char err[256];
    int rc = flags_parse(table, 1, argc, argv,
                         "map-keygen: a CURVE key pair (public and secret, z85)", err, sizeof err);
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "map-keygen: %s\n", err), 2);
    zsys_handler_set(NULL);
    zcert_t *c = zcert_new();
    if (!c) {
        fprintf(stderr, "map-keygen: cannot make a key pair (libzmq without CURVE?)\n");
        return 1;
    }
    printf("public=%s\nsecret=%s\n", zcert_public_txt(c), zcert_secret_txt(c));
    if (cert && zcert_save(c, cert) != 0) {
        fprintf(stderr, "map-keygen: cannot write certificate '%s'\n", cert);
        zcert_destroy(&c);
        return 1;
    }
    zcert_destroy(&c);
    return 0;
}
