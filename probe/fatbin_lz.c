/* NVIDIA's LZ compression of fatbin entries (flag 0x2000; fatbinary's
 * -compress-mode=speed in CUDA 13, the default scheme of CUDA 11.x/12.x).
 *
 * The stream is a sequence of LZ4 block sequences: a token byte whose high nibble is
 * the literal count and low nibble the match length minus 4 (15 means "add the
 * following bytes up to and including the first that is not 255"), the literals, then a
 * little-endian u16 offset back into the output and the match.  The last sequence has
 * literals only.  Every read and write is checked: a hostile stream ends in an error. */
#include <string.h>

#include "probe/fatbin.h"

/* Reads an LZ4 length extension; false when the input ends inside it. */
static bool read_ext(const uint8_t *in, size_t in_len, size_t *ip, size_t *len)
{
    for (;;) {
        if (*ip >= in_len)
            return false;
        uint8_t b = in[(*ip)++];
        *len += b;
        if (*len > FATBIN_MAX_PAYLOAD)
            return false;
        if (b != 255)
            return true;
    }
}

adg_error *fatbin_lz_decompress(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    size_t ip = 0, op = 0;
    while (ip < in_len) {
        uint8_t token = in[ip++];
        size_t lit = token >> 4;
        if (lit == 15 && !read_ext(in, in_len, &ip, &lit))
            return adg_error_new(ADG_E_FORMAT, "LZ stream ends inside a literal length at byte %zu", ip);
        if (lit > in_len - ip)
            return adg_error_new(ADG_E_FORMAT, "LZ literal run of %zu bytes at byte %zu overruns the input (%zu bytes)",
                                 lit, ip, in_len);
        if (lit > out_len - op)
            return adg_error_new(ADG_E_FORMAT, "LZ literal run at byte %zu overruns the declared size %zu", ip,
                                 out_len);
        memcpy(out + op, in + ip, lit);
        ip += lit;
        op += lit;
        if (ip == in_len)
            break; /* the last sequence carries literals only */
        if (in_len - ip < 2)
            return adg_error_new(ADG_E_FORMAT, "LZ stream ends inside a match offset at byte %zu", ip);
        size_t off = (size_t)in[ip] | (size_t)in[ip + 1] << 8;
        ip += 2;
        size_t mlen = (token & 15u) + 4;
        if ((token & 15u) == 15 && !read_ext(in, in_len, &ip, &mlen))
            return adg_error_new(ADG_E_FORMAT, "LZ stream ends inside a match length at byte %zu", ip);
        if (off == 0 || off > op)
            return adg_error_new(ADG_E_FORMAT, "LZ match offset %zu at byte %zu points before the start of the output",
                                 off, ip);
        if (mlen > out_len - op)
            return adg_error_new(ADG_E_FORMAT, "LZ match at byte %zu overruns the declared size %zu", ip, out_len);
        /* Byte by byte: a match may overlap the bytes it produces (offset < length). */
        for (size_t i = 0; i < mlen; i++)
            out[op + i] = out[op + i - off];
        op += mlen;
    }
    if (op != out_len)
        return adg_error_new(ADG_E_FORMAT, "LZ stream decodes to %zu bytes, the entry declares %zu", op, out_len);
    return NULL;
}
