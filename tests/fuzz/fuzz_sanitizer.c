/* compute-sanitizer reports: the XML (`--xml=yes --save=FILE`) and text parsers and the
 * nearest-allocation sentence they share; the first byte picks the parser. */
#include <stdlib.h>
#include <string.h>

#include "common/adg_error.h"
#include "fuzz_util.h"
#include "profiler/sanitizer_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    size--;
    san_report r;
    memset(&r, 0, sizeof r);
    adg_error *e = NULL;
    if (mode == 0) {
        e = san_parse_xml(text, size, "fuzz.xml", &r);
    } else if (mode == 1) {
        e = san_parse_text(text, size, "fuzz.txt", &r);
    } else {
        char *z = malloc(size + 1); /* san_parse_nearest takes a C string */
        if (!z)
            return 0;
        memcpy(z, text, size);
        z[size] = 0;
        crash_san s;
        memset(&s, 0, sizeof s);
        (void)san_parse_nearest(z, &s);
        free(z);
        return 0;
    }
    adg_error_free(e);
    san_report_free(&r);
    return 0;
}
