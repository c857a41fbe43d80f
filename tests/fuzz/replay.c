/* replay: runs a fuzz target's LLVMFuzzerTestOneInput on every file of the
 * directories given (the corpus and saved crashers), so any compiler's test
 * run checks the inputs the fuzzer found. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int s_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            char path[4096];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && s_run_file(path) == 0)
                files++;
        }
        closedir(d);
    }
    /* The empty input and a few edge sizes, whatever the corpus holds. */
    static const uint8_t edge[] = {0x93, 0x01, 0x02, 0xff, 0xdd, 0x10, 0x00, 0x00, 0x00};
    for (size_t n = 0; n <= sizeof edge; n++)
        LLVMFuzzerTestOneInput(edge, n);
    printf("replay: %d inputs ran cleanly\n", files);
    return files > 0 ? 0 : 1;
}
