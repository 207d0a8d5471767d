/* JSON through jansson: reading with error positions, atomic writing. */
#ifndef ADG_JSON_H
#define ADG_JSON_H

#include <jansson.h>

#include "common/adg_error.h"

/* Parses a file; a syntax error names the file, line and column. `what` names the
 * kind of file in messages ("run record", "snapshot"). */
adg_error *adg_json_load_file(const char *path, const char *what, json_t **out);
/* Serialises (indented, keys in insertion order) and writes atomically. */
adg_error *adg_json_write_atomic(const char *path, const json_t *root);
/* Prints to a stream with a trailing newline. */
adg_error *adg_json_print(FILE *f, const json_t *root);

/* Checks root["schema"] == "<family>/<major>" (minor revisions "family/major.minor"
 * are accepted).  The error names what was found. */
adg_error *adg_json_check_schema(const json_t *root, const char *family, int major, const char *what);

#endif
