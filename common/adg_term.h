/* Terminal facts: colour only on a terminal, never when NO_COLOR is set or TERM=dumb. */
#ifndef ADG_TERM_H
#define ADG_TERM_H

#include <stdbool.h>
#include <stdio.h>

typedef enum { ADG_COLOR_AUTO, ADG_COLOR_ALWAYS, ADG_COLOR_NEVER } adg_color_mode;

bool adg_term_use_color(FILE *f, adg_color_mode mode);
/* Parses "auto|always|never"; false on anything else. */
bool adg_term_parse_color(const char *s, adg_color_mode *out);

#define ADG_SGR_RESET  "\033[0m"
#define ADG_SGR_BOLD   "\033[1m"
#define ADG_SGR_DIM    "\033[2m"
#define ADG_SGR_RED    "\033[31m"
#define ADG_SGR_GREEN  "\033[32m"
#define ADG_SGR_YELLOW "\033[33m"
#define ADG_SGR_BLUE   "\033[34m"
#define ADG_SGR_CYAN   "\033[36m"

#endif
