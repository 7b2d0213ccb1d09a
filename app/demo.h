#ifndef CREST_APP_DEMO_H
#define CREST_APP_DEMO_H

/* Run the demo app with the flags in argv[first..argc); returns the exit status. */
int demo_main(int argc, char **argv, int first);

#endif
