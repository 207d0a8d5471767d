#include "common/adg_json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"

adg_error *adg_json_load_file(const char *path, const char *what, json_t **out)
{
    *out = NULL;
    char *data;
    size_t len;
    adg_error *e = adg_read_file(path, 0, &data, &len);
    if (e)
        return adg_error_prefix(e, "%s", what);
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    free(data);
    if (!root)
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s %s is not valid JSON: line %d, column %d: %s", what,
                                            path, jerr.line, jerr.column, jerr.text),
                              "the file is truncated or corrupt; produce it again");
    *out = root;
    return NULL;
}

adg_error *adg_json_write_atomic(const char *path, const json_t *root)
{
    char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!s)
        return adg_error_new(ADG_E_NOMEM, "cannot serialise JSON for %s", path);
    size_t n = strlen(s);
    char *withnl = realloc(s, n + 2);
    if (!withnl) {
        free(s);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    withnl[n] = '\n';
    withnl[n + 1] = '\0';
    adg_error *e = adg_write_file_atomic(path, withnl, n + 1);
    free(withnl);
    return e;
}

adg_error *adg_json_print(FILE *f, const json_t *root)
{
    if (json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0 ||
        fputc('\n', f) == EOF || fflush(f) != 0)
        return adg_error_errno(ADG_E_IO, errno ? errno : EIO, "cannot write JSON output");
    return NULL;
}

adg_error *adg_json_check_schema(const json_t *root, const char *family, int major, const char *what)
{
    const char *schema = json_string_value(json_object_get(root, "schema"));
    if (!json_is_object(root) || !schema)
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s has no \"schema\" field: not an amxdiag %s", what, family),
                              "pass a file written by amxdiag");
    size_t fl = strlen(family);
    if (strncmp(schema, family, fl) != 0 || schema[fl] != '/')
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s has schema \"%s\", expected \"%s/%d\"", what, schema,
                                            family, major),
                              "pass a file of the right kind");
    char *end;
    long m = strtol(schema + fl + 1, &end, 10);
    if (end == schema + fl + 1 || (*end && *end != '.'))
        return adg_error_new(ADG_E_FORMAT, "%s has a malformed schema \"%s\"", what, schema);
    if (m != major)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "%s has schema version %ld; this amxdiag reads version %d",
                                            what, m, major),
                              "use the amxdiag release that wrote it, or re-record with this one");
    return NULL;
}
