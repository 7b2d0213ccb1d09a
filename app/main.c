/* The crest binary: `crest demo` runs the demo app (app/demo.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

static void usage(FILE *f) {
    fprintf(f, "Usage: crest COMMAND [flags]\n"
               "Commands:\n"
               "  demo        serve the demo app (see 'crest demo --help')\n"
               "Flags:\n"
               "  -h, --help  this text\n"
               "  --version   print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("crest %s\n", crest_version());
        return 0;
    }
    if (strcmp(cmd, "demo") == 0)
        return demo_main(argc, argv, 2);
    fprintf(stderr, "crest: unknown command '%s' (see 'crest --help')\n", cmd);
    return 2;
}
