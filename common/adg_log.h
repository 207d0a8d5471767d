/* Diagnostics on stderr. Commands print results on stdout; logs never go there. */
#ifndef ADG_LOG_H
#define ADG_LOG_H

typedef enum { ADG_LOG_QUIET = 0, ADG_LOG_WARN = 1, ADG_LOG_INFO = 2, ADG_LOG_DEBUG = 3 } adg_log_level;

void adg_log_set_level(adg_log_level level);
adg_log_level adg_log_get_level(void);

__attribute__((format(printf, 2, 3)))
void adg_log(adg_log_level level, const char *fmt, ...);

#define adg_warn(...)  adg_log(ADG_LOG_WARN, __VA_ARGS__)
#define adg_info(...)  adg_log(ADG_LOG_INFO, __VA_ARGS__)
#define adg_debug(...) adg_log(ADG_LOG_DEBUG, __VA_ARGS__)

#endif
