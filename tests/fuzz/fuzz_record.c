/* Run records: the loader (JSON syntax, schema, required arrays), the bus rebuilt from a
 * record (registry, series, events, unavailable list), everything a replay draws
 * (`top --replay RUN.json --dump` and `--json` render the whole record without a
 * terminal), and the reports built from it (run, crash, and a compare of the record with
 * itself) in all three formats. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "common/adg_record.h"
#include "fuzz_util.h"
#include "reports/reports.h"
#include "tui/tui.h"

static void render_all(adg_error *e, json_t *doc)
{
    if (e) {
        adg_error_free(e);
        json_decref(doc);
        return;
    }
    static const rep_format formats[] = {REP_FORMAT_MD, REP_FORMAT_HTML, REP_FORMAT_JSON};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        char *text = NULL;
        adg_error_free(rep_render(doc, formats[i], &text));
        free(text);
    }
    (void)rep_doc_exit_code(doc);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    char path[64];
    int fd = fuzz_memfd("record", data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    json_t *root = NULL;
    adg_error *e = adg_record_load(path, &root);
    if (!e) {
        adg_bus *bus = NULL;
        e = adg_bus_from_record(root, &bus);
        adg_bus_free(bus);
        json_decref(root);
    }
    if (e) {
        adg_error_free(e);
    } else {
        /* A valid record: draw it as top's replay does, in both non-terminal views. */
        char a0[] = "top", a1[] = "--replay", a3[] = "--dump", a4[] = "--json", a5[] = "--size", a6[] = "80x24";
        char *argv1[] = {a0, a1, path, a3, NULL};
        char *argv2[] = {a0, a1, path, a4, a5, a6, NULL};
        fuzz_getopt_reset();
        (void)tui_top_cmd_main(4, argv1);
        fuzz_getopt_reset();
        (void)tui_top_cmd_main(6, argv2);
    }
    /* The report builders load the file themselves: valid or not, it goes through them. */
    json_t *doc = NULL;
    e = rep_report_run(path, &doc); /* (not one call: argument order is unspecified) */
    render_all(e, doc);
    e = rep_report_crash(path, &doc);
    render_all(e, doc);
    e = rep_report_compare(path, path, &doc);
    render_all(e, doc);
    close(fd);
    return 0;
}
