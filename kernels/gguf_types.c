/* ggml's type table and GGUF's value types, as data. */
#include "kernels/kern_gguf.h"

#include <stdio.h>

#include "kernels/kern_quant.h"

/* Sizes from ggml's type_traits (ggml.c); ids 4, 5, 31-33 and 36-38 were removed from
 * ggml and are rejected. */
static const kern_ggml_type_info ggml_types[KERN_GGML_TYPE_COUNT] = {
    [0] = {"f32", 1, 4},        [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},     [6] = {"q5_0", 32, 22},     [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 36},     [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},  [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},  [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74}, [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110}, [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},       [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},       [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},  [30] = {"bf16", 1, 2},      [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},  [39] = {"mxfp4", 32, 17},
};

const kern_ggml_type_info *kern_ggml_type(uint32_t type)
{
    if (type >= KERN_GGML_TYPE_COUNT || !ggml_types[type].name)
        return NULL;
    return &ggml_types[type];
}

const char *kern_ggml_type_name(uint32_t type)
{
    static _Thread_local char buf[32];
    const kern_ggml_type_info *t = kern_ggml_type(type);
    if (t)
        return t->name;
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

bool kern_ggml_type_supported(uint32_t type)
{
    return type == KERN_TYPE_F32 || type == KERN_TYPE_F16 || type == KERN_TYPE_BF16 ||
           type == KERN_TYPE_Q4_0 || type == KERN_TYPE_Q8_0;
}

const char *kern_gguf_vtype_name(uint32_t t)
{
    static const char *const names[KERN_GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return t < KERN_GGUF_VTYPE_COUNT ? names[t] : "?";
}
