/* The injection stream (frames from libamxdiag-inject.so in a profiled CUDA process):
 * the incremental parser fed in pieces whose sizes come from the input, as a pipe
 * delivers them, then the end-of-stream check. */
#include <string.h>

#include "fuzz_util.h"
#include "profiler/cupti_proto.h"

static void on_frame(void *ctx, const cupti_frame *f)
{
    size_t *sum = ctx;
    /* Touch what a consumer touches: the fixed record and every name byte + its NUL. */
    *sum += f->type + f->name_len;
    if (f->name)
        *sum += strlen(f->name) + (unsigned char)f->name[f->name_len];
    (void)cupti_rec_type_name(f->type);
    if (f->type == CUPTI_REC_MEMCPY)
        (void)cupti_copy_kind_name(f->u.memcpy.kind);
    if (f->type == CUPTI_REC_FLUSH)
        (void)cupti_flush_reason_name(f->u.flush.reason);
    if (f->type == CUPTI_REC_API_ERROR)
        (void)cupti_error_is_fatal(f->u.api_error.result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] * 7 + 1; /* 1 .. 1786 bytes per read */
    data++;
    size--;
    size_t sum = 0;
    cupti_parser p;
    cupti_parser_init(&p, on_frame, &sum);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (!cupti_parser_feed(&p, data + off, n))
            break;
    }
    (void)cupti_parser_end(&p);
    (void)cupti_parser_error(&p);
    cupti_parser_free(&p);
    return 0;
}
