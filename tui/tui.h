/* Public surface of tui/. */
#ifndef TUI_H
#define TUI_H

int tui_top_cmd_main(int argc, char **argv);

#endif
