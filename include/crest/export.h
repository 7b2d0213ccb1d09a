/* Symbol visibility: the library is built with -fvisibility=hidden; only CREST_API symbols are
 * exported from libcrest.so. */
#ifndef CREST_EXPORT_H
#define CREST_EXPORT_H

#if defined(__GNUC__)
#define CREST_API __attribute__((visibility("default")))
#else
#define CREST_API
#endif

#endif
