/* SPDX-License-Identifier: MIT */
/*
 * replay_main.c — runs every file of a fuzz corpus directory through a
 * libFuzzer target's LLVMFuzzerTestOneInput(), so the corpus is an ordinary
 * regression test (label "fuzz") under gcc, without libFuzzer. Names each
 * input before running it, so a crash or sanitizer report follows the name
 * of the input that caused it. Exits 1 if the directory holds no inputs.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    if (!buf)
        return -1;
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    int n = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        printf("%s\n", e->d_name);
        fflush(stdout);
        if (run_file(path) == 0)
            n++;
    }
    closedir(d);
    printf("%d inputs replayed\n", n);
    return n > 0 ? 0 : 1;
}
