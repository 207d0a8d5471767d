/* CUDA fat binaries: the container/entry parser with zstd and NVIDIA-LZ payloads, the
 * cubin header reader, the LZ decompressor on its own, and the ELF route
 * (fatbin_read_file: libelf finds .nv_fatbin in a host binary).  The first byte picks
 * the route so that one corpus covers all of them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "fuzz_util.h"
#include "probe/fatbin.h"

static void list_json(fatbin_list *l)
{
    json_t *j = fatbin_list_json(l);
    char *s = json_dumps(j, JSON_COMPACT);
    free(s);
    json_decref(j);
    char buf[64];
    for (size_t i = 0; i < l->n; i++)
        (void)fatbin_entry_name(&l->v[i], buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    adg_error *e = NULL;
    fatbin_list l = {0};
    switch (mode) {
    case 0:
        e = fatbin_parse(data, size, &l);
        if (!e)
            list_json(&l);
        fatbin_list_free(&l);
        break;
    case 1: {
        fatbin_entry ent;
        memset(&ent, 0, sizeof ent);
        e = fatbin_read_cubin(data, size, &ent);
        break;
    }
    case 2: {
        /* u16 output size, then the compressed stream */
        if (size < 2)
            return 0;
        size_t out_len = (size_t)data[0] | (size_t)data[1] << 8;
        uint8_t *out = malloc(out_len ? out_len : 1);
        if (!out)
            return 0;
        e = fatbin_lz_decompress(data + 2, size - 2, out, out_len);
        free(out);
        break;
    }
    default: {
        char path[64];
        int fd = fuzz_memfd("fatbin", data, size, path, sizeof path);
        if (fd < 0)
            return 0;
        e = fatbin_read_file(path, &l);
        if (!e)
            list_json(&l);
        fatbin_list_free(&l);
        close(fd);
        break;
    }
    }
    adg_error_free(e);
    return 0;
}
