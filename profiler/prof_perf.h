/* Thin wrappers over perf_event_open(2) shared by the sampler and the PMU collectors. */
#ifndef PROF_PERF_H
#define PROF_PERF_H

#include <linux/perf_event.h>
#include <sys/types.h>

#include "common/adg_error.h"

/* perf_event_open; returns the fd or -1 with errno set. */
int prof_perf_open(struct perf_event_attr *attr, pid_t pid, int cpu, int group_fd, unsigned long flags);
/* An error for a failed open, naming what was opened, with a remedy that fits errno
 * (perf_event_paranoid, CAP_PERFMON, no PMU in a VM, ...). */
adg_error *prof_perf_error(int errnum, const char *what);
/* /proc/sys/kernel/perf_event_paranoid, or 99 when unreadable. */
int prof_perf_paranoid(void);

#endif
