/* Activity record decoding for the CUDA 13 layouts (CUpti_ActivityKernel10,
 * CUpti_ActivityMemcpy6, CUpti_ActivityMemset4). cupti_load.c refuses a libcupti of
 * another major release, so these are the layouts the records have. */
#include "profiler/cupti_activity.h"

#include <string.h>

bool cupti_activity_supported(void)
{
#ifdef ADG_HAVE_CUPTI
    return true;
#else
    return false;
#endif
}

#ifdef ADG_HAVE_CUPTI

static uint64_t shift(uint64_t t, int64_t off)
{
    if (!t)
        return 0;
    return off < 0 && (uint64_t)(-off) > t ? 0 : (uint64_t)((int64_t)t + off);
}

uint32_t cupti_activity_copy_kind(uint32_t k)
{
    switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA:
        return CUPTI_COPY_HTOD;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH:
        return CUPTI_COPY_DTOH;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA:
        return CUPTI_COPY_DTOD;
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH:
        return CUPTI_COPY_HTOH;
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP:
        return CUPTI_COPY_PTOP;
    default:
        return CUPTI_COPY_OTHER;
    }
}

bool cupti_activity_decode(const CUpti_Activity *rec, int64_t off, cupti_emit_fn emit, void *ctx)
{
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)(const void *)rec;
        cupti_kernel_rec r;
        memset(&r, 0, sizeof r);
        r.start_ns = shift(k->start, off);
        r.end_ns = shift(k->end, off);
        r.correlation = k->correlationId;
        r.stream = k->streamId;
        r.device = k->deviceId;
        r.context = k->contextId;
        r.grid[0] = k->gridX;
        r.grid[1] = k->gridY;
        r.grid[2] = k->gridZ;
        r.block[0] = k->blockX;
        r.block[1] = k->blockY;
        r.block[2] = k->blockZ;
        r.regs = k->registersPerThread;
        r.static_smem = (uint32_t)k->staticSharedMemory;
        r.dynamic_smem = (uint32_t)k->dynamicSharedMemory;
        r.graph_id = k->graphId;
        const char *name = k->name;
        emit(ctx, CUPTI_REC_KERNEL, &r, name, name ? strlen(name) : 0);
        return true;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)(const void *)rec;
        cupti_memcpy_rec r;
        memset(&r, 0, sizeof r);
        r.start_ns = shift(m->start, off);
        r.end_ns = shift(m->end, off);
        r.bytes = m->bytes;
        r.correlation = m->correlationId;
        r.stream = m->streamId;
        r.device = m->deviceId;
        r.kind = cupti_activity_copy_kind(m->copyKind);
        emit(ctx, CUPTI_REC_MEMCPY, &r, NULL, 0);
        return true;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)(const void *)rec;
        cupti_memset_rec r;
        memset(&r, 0, sizeof r);
        r.start_ns = shift(m->start, off);
        r.end_ns = shift(m->end, off);
        r.bytes = m->bytes;
        r.correlation = m->correlationId;
        r.stream = m->streamId;
        r.device = m->deviceId;
        r.value = m->value;
        emit(ctx, CUPTI_REC_MEMSET, &r, NULL, 0);
        return true;
    }
    default:
        return false;
    }
}

size_t cupti_activity_walk(uint8_t *buffer, size_t valid, cupti_next_fn next, int64_t off, cupti_emit_fn emit,
                           void *ctx)
{
    size_t n = 0;
    CUpti_Activity *rec = NULL;
    while (valid && next(buffer, valid, &rec) == CUPTI_SUCCESS && rec)
        n += cupti_activity_decode(rec, off, emit, ctx);
    return n;
}

#endif
