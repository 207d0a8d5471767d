/* GPU section of the probe (driver, devices, support matrix, functional test). */
#include "probe/probe.h"

adg_error *probe_gpu_section(const probe_opts *opts, probe_report *rep)
{
    (void)opts;
    probe_add(rep, "gpu", "gpu.driver", PROBE_SKIP, "NVIDIA driver", "GPU checks are not implemented yet",
              "not evaluated");
    return NULL;
}

adg_error *probe_binary_section(const probe_opts *opts, probe_report *rep)
{
    (void)rep;
    if (opts->nbinaries == 0)
        return NULL;
    return adg_error_new(ADG_E_UNSUPPORTED, "--binary is not implemented yet");
}
