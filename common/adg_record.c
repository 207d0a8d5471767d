#include "common/adg_record.h"

#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "adg_version.h"
#include "common/adg_json.h"
#include "common/adg_util.h"

struct adg_record {
    json_t *sections;
    char status[32];
    char created[32];
};

static const char *reserved[] = {"schema", "tool", "created", "host", "status",
                                 "metrics", "series", "events", "unavailable"};

adg_record *adg_record_new(void)
{
    adg_record *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->sections = json_object();
    strcpy(r->status, "complete");
    adg_utc_iso8601(r->created, sizeof r->created);
    return r;
}

void adg_record_free(adg_record *r)
{
    if (!r)
        return;
    json_decref(r->sections);
    free(r);
}

adg_error *adg_record_set_section(adg_record *r, const char *name, json_t *value)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(reserved); i++)
        if (!strcmp(name, reserved[i])) {
            json_decref(value);
            return adg_error_new(ADG_E_INTERNAL, "run record section name \"%s\" is reserved", name);
        }
    json_object_set_new(r->sections, name, value);
    return NULL;
}

json_t *adg_record_section(adg_record *r, const char *name)
{
    return json_object_get(r->sections, name);
}

void adg_record_set_status(adg_record *r, const char *status)
{
    snprintf(r->status, sizeof r->status, "%s", status);
}

json_t *adg_record_build(adg_record *r, adg_bus *bus)
{
    struct utsname u;
    char host[256] = "";
    if (uname(&u) == 0)
        snprintf(host, sizeof host, "%s", u.nodename);
    json_t *root = json_pack("{s:s,s:{s:s,s:s},s:s,s:s,s:s}", "schema", ADG_RECORD_SCHEMA, "tool", "name", "amxdiag",
                             "version", AMXDIAG_VERSION, "created", r->created, "host", host, "status", r->status);
    if (!root)
        return NULL;
    json_object_update(root, r->sections);
    json_object_set_new(root, "metrics", bus ? adg_bus_metrics_json(bus) : json_array());
    json_object_set_new(root, "series", bus ? adg_bus_series_json(bus) : json_array());
    json_object_set_new(root, "events", bus ? adg_bus_events_json(bus) : json_array());
    json_object_set_new(root, "unavailable", bus ? adg_bus_unavailable_json(bus) : json_array());
    return root;
}

adg_error *adg_record_write(adg_record *r, adg_bus *bus, const char *path)
{
    json_t *root = adg_record_build(r, bus);
    if (!root)
        return adg_error_new(ADG_E_NOMEM, "out of memory building the run record");
    adg_error *e = adg_json_write_atomic(path, root);
    json_decref(root);
    return e ? adg_error_prefix(e, "run record") : NULL;
}

adg_error *adg_record_load(const char *path, json_t **out)
{
    *out = NULL;
    json_t *root;
    adg_error *e = adg_json_load_file(path, "run record", &root);
    if (e)
        return e;
    char what[512];
    snprintf(what, sizeof what, "run record %s", path);
    if ((e = adg_json_check_schema(root, ADG_RECORD_SCHEMA_FAMILY, ADG_RECORD_SCHEMA_MAJOR, what))) {
        json_decref(root);
        return e;
    }
    static const char *arrays[] = {"metrics", "series", "events", "unavailable"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(arrays); i++)
        if (!json_is_array(json_object_get(root, arrays[i]))) {
            json_decref(root);
            return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: field \"%s\" is missing or not an array", what,
                                                arrays[i]),
                                  "the record is truncated or was edited; re-record it");
        }
    *out = root;
    return NULL;
}
