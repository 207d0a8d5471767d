/* Where the panels go.  80x24 is the floor that must stay usable: two columns of panels
 * with the hot-function table underneath; from 150 columns the GPU gets its own column
 * so that CPU, memory and GPU sit side by side, and extra height goes first to the CPU
 * panel (one bar per core) and then to the tables. */
#include "tui/tui_internal.h"

static int clamp(int v, int lo, int hi)
{
    if (hi < lo)
        hi = lo;
    return v < lo ? lo : v > hi ? hi : v;
}

void tui_layout_compute(int w, int h, int cpu_rows, tui_layout *o)
{
    *o = (tui_layout){0};
    if (w < TUI_MIN_W || h < TUI_MIN_H) {
        o->too_small = true;
        return;
    }
    int hh = h >= 40 ? 3 : 2;
    o->header = (tui_rect){0, 0, w, hh};
    o->footer = (tui_rect){0, h - 1, w, 1};
    int y = hh, body = h - hh - 1;

    if (w >= 150) {
        int top = clamp(cpu_rows + 2, 8, body / 2);
        int hist = clamp(body / 4, 5, 10);
        int third = w / 3;
        o->panel[TUI_P_CPU] = (tui_rect){0, y, third, top};
        o->panel[TUI_P_MEM] = (tui_rect){third, y, third, top};
        o->panel[TUI_P_GPU] = (tui_rect){2 * third, y, w - 2 * third, top};
        y += top;
        o->panel[TUI_P_HIST] = (tui_rect){0, y, w, hist};
        y += hist;
        o->panel[TUI_P_HOT] = (tui_rect){0, y, w, h - 1 - y};
        return;
    }
    int half = w / 2;
    int top = clamp(cpu_rows + 2, 6, body * 45 / 100);
    int mid = clamp(body * 30 / 100, 6, 12);
    if (body - top - mid < 5) /* keep at least a header and three rows of hot functions */
        mid = body - top - 5 < 4 ? 4 : body - top - 5;
    o->panel[TUI_P_CPU] = (tui_rect){0, y, half, top};
    o->panel[TUI_P_MEM] = (tui_rect){half, y, w - half, top};
    y += top;
    o->panel[TUI_P_GPU] = (tui_rect){0, y, half, mid};
    o->panel[TUI_P_HIST] = (tui_rect){half, y, w - half, mid};
    y += mid;
    o->panel[TUI_P_HOT] = (tui_rect){0, y, w, h - 1 - y};
}
