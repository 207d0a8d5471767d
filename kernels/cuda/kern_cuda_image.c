/* The embedded fatbin and PTX, and a reader for the fatbin container. */
#include "kernels/cuda/kern_cuda_image.h"

#include <string.h>

#ifdef AMXDIAG_CUDA_KERNELS
/* Defined by the generated kern_cuda_embed.S (kernels/cuda/CMakeLists.txt). */
extern const unsigned char kern_cuda_fatbin_start[], kern_cuda_fatbin_end[];
extern const char kern_cuda_ptx_start[], kern_cuda_ptx_end[];
#endif

bool kern_cuda_built_with_kernels(void)
{
#ifdef AMXDIAG_CUDA_KERNELS
    return true;
#else
    return false;
#endif
}

void kern_cuda_embedded_fatbin(const void **data, size_t *len)
{
#ifdef AMXDIAG_CUDA_KERNELS
    *data = kern_cuda_fatbin_start;
    *len = (size_t)(kern_cuda_fatbin_end - kern_cuda_fatbin_start);
#else
    *data = NULL;
    *len = 0;
#endif
}

void kern_cuda_embedded_ptx(const char **text, size_t *len)
{
#ifdef AMXDIAG_CUDA_KERNELS
    *text = kern_cuda_ptx_start;
    *len = (size_t)(kern_cuda_ptx_end - kern_cuda_ptx_start);
#else
    *text = NULL;
    *len = 0;
#endif
}

const char *kern_cuda_built_archs(void)
{
#ifdef AMXDIAG_CUDA_ARCHS
    return AMXDIAG_CUDA_ARCHS;
#else
    return "";
#endif
}

int kern_cuda_built_ptx_arch(void)
{
#ifdef AMXDIAG_CUDA_PTX_ARCH
    return AMXDIAG_CUDA_PTX_ARCH;
#else
    return 0;
#endif
}

int kern_cuda_built_jit_ptx_arch(void)
{
#ifdef AMXDIAG_CUDA_JIT_PTX_ARCH
    return AMXDIAG_CUDA_JIT_PTX_ARCH;
#else
    return 0;
#endif
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)rd16(p) | ((uint32_t)rd16(p + 2) << 16); }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

adg_error *kern_fatbin_parse(const void *blob, size_t len, kern_fatbin_entry *out, size_t max, size_t *count)
{
    const unsigned char *b = blob;
    size_t n = 0, off = 0;
    *count = 0;
    if (!b || len < 16)
        return adg_error_new(ADG_E_FORMAT, "fatbin: %zu bytes, too short for a container header", len);
    while (off + 16 <= len) {
        uint32_t magic = rd32(b + off);
        if (magic != KERN_FATBIN_MAGIC) {
            /* Containers are 8-byte aligned; the section may be padded with zeros. */
            if (magic == 0 && n > 0)
                break;
            return adg_error_new(ADG_E_FORMAT, "fatbin: bad container magic 0x%08x at offset %zu (want 0x%08x)",
                                 magic, off, KERN_FATBIN_MAGIC);
        }
        uint16_t hsize = rd16(b + off + 6);
        uint64_t fsize = rd64(b + off + 8);
        if (hsize < 16 || fsize > len || off + hsize + fsize > len)
            return adg_error_new(ADG_E_FORMAT, "fatbin: container at offset %zu claims %llu bytes, past the end (%zu)",
                                 off, (unsigned long long)fsize, len);
        size_t e = off + hsize, end = off + hsize + (size_t)fsize;
        while (e + 16 <= end) {
            uint32_t ehs = rd32(b + e + 4);
            uint64_t psz = rd64(b + e + 8);
            if (ehs < 32 || e + ehs > end || psz > end - e - ehs)
                return adg_error_new(ADG_E_FORMAT, "fatbin: entry at offset %zu runs past its container", e);
            if (n < max) {
                kern_fatbin_entry *x = &out[n];
                memset(x, 0, sizeof *x);
                x->kind = rd16(b + e);
                x->ptx_minor = rd16(b + e + 24);
                x->ptx_major = rd16(b + e + 26);
                x->arch = (int)rd32(b + e + 28);
                x->flags = ehs >= 48 ? rd64(b + e + 40) : 0;
                x->payload_bytes = psz;
                x->offset = e;
            }
            n++;
            e += ehs + (size_t)psz;
        }
        off = (end + 7) & ~(size_t)7;
    }
    *count = n;
    return NULL;
}

void kern_fatbin_pick(const kern_fatbin_entry *e, size_t n, int cc_major, int cc_minor, int *sass_arch, int *ptx_arch)
{
    int dev = cc_major * 10 + cc_minor;
    int best_sass = 0, best_ptx = 0;
    for (size_t i = 0; i < n; i++) {
        int a = e[i].arch;
        if (e[i].kind == 2 && a / 10 == cc_major && a % 10 <= cc_minor && a > best_sass)
            best_sass = a;
        if (e[i].kind == 1 && a <= dev && a > best_ptx)
            best_ptx = a;
    }
    *sass_arch = best_sass;
    *ptx_arch = best_ptx;
}
