/* NUMA memory policy for the engine's allocations (libnuma). */
#include "kernels/kern_engine.h"

#include <numa.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"

adg_error *kern_engine_set_numa(const char *policy)
{
    if (!policy || !strcmp(policy, "local"))
        return NULL;
    if (numa_available() < 0)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "--numa %s: the kernel offers no NUMA support here", policy),
                              "run without --numa (one memory node)");
    if (!strcmp(policy, "interleave")) {
        numa_set_interleave_mask(numa_all_nodes_ptr);
        return NULL;
    }
    uint64_t node;
    if (!strncmp(policy, "node=", 5) && adg_parse_u64(policy + 5, &node)) {
        if ((int64_t)node > numa_max_node())
            return adg_error_hint(adg_error_new(ADG_E_USAGE, "--numa %s: this machine's nodes are 0..%d", policy,
                                                numa_max_node()),
                                  "pick an existing node ('amxdiag probe --only numa' lists them)");
        struct bitmask *bm = numa_allocate_nodemask();
        if (!bm)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        numa_bitmask_setbit(bm, (unsigned)node);
        numa_set_membind(bm);
        numa_free_nodemask(bm);
        return NULL;
    }
    return adg_error_hint(adg_error_new(ADG_E_USAGE, "--numa '%s' is not a policy", policy),
                          "policies: local, interleave, node=N");
}
