/* Public surface of profiler/. */
#ifndef PROFILER_H
#define PROFILER_H

int prof_profile_cmd_main(int argc, char **argv);

#endif
