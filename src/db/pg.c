/* PostgreSQL behind crest/db.h (being written). */
#include <stdio.h>

#include "db/db.h"

int crest__pg_open(crest_db_t *db, const char *url) {
    (void)url;
    snprintf(db->errmsg, sizeof(db->errmsg), "PostgreSQL is not built yet");
    return CREST_ENOTSUP;
}
