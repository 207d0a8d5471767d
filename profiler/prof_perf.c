#include "profiler/prof_perf.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/adg_util.h"

int prof_perf_open(struct perf_event_attr *attr, pid_t pid, int cpu, int group_fd, unsigned long flags)
{
    return (int)syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}

int prof_perf_paranoid(void)
{
    char *data;
    size_t len;
    adg_error *e = adg_read_file("/proc/sys/kernel/perf_event_paranoid", 64, &data, &len);
    if (e) {
        adg_error_free(e);
        return 99;
    }
    int v = atoi(data);
    free(data);
    return v;
}

adg_error *prof_perf_error(int errnum, const char *what)
{
    switch (errnum) {
    case EACCES:
    case EPERM:
        return adg_error_hint(adg_error_errno(ADG_E_PERMISSION, errnum, "perf_event_open refused %s (perf_event_paranoid=%d)",
                                              what, prof_perf_paranoid()),
                              "run as root, grant CAP_PERFMON, or lower /proc/sys/kernel/perf_event_paranoid "
                              "(system-wide counters need <= 0, process counters <= 2)");
    case ENOENT:
    case EOPNOTSUPP:
    case ENODEV:
        return adg_error_hint(adg_error_errno(ADG_E_HARDWARE, errnum, "%s: no such event on this CPU/kernel", what),
                              "virtual machines usually expose no hardware PMU; on bare metal check that the "
                              "kernel knows this CPU model");
    case ENOSYS:
        return adg_error_hint(adg_error_errno(ADG_E_UNSUPPORTED, errnum, "%s: perf_event_open is not available", what),
                              "the kernel was built without CONFIG_PERF_EVENTS or a seccomp filter blocks it");
    case EMFILE:
    case ENFILE:
        return adg_error_hint(adg_error_errno(ADG_E_IO, errnum, "%s: out of file descriptors", what),
                              "raise the limit with 'ulimit -n'");
    default:
        return adg_error_errno(ADG_E_HARDWARE, errnum, "perf_event_open(%s) failed", what);
    }
}
