/* Internal pieces of `amxdiag top`, shared by the files of tui/ and its unit tests.
 *
 * Shape (htop/nvtop): the screen is drawn into a tui_canvas (cells of code point +
 * style), which tui_screen.c copies to ncurses; panels and widgets only know the canvas,
 * so they are tested without a terminal and the snapshot ('s') is the canvas' text.
 * Panels read metrics from the bus by the names in tui_names.c and never call collectors. */
#ifndef TUI_INTERNAL_H
#define TUI_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_ceilings.h"
#include "common/adg_error.h"
#include "common/adg_metrics.h"

/* ---- canvas ---- */

enum tui_style {
    TUI_S_NORMAL,
    TUI_S_DIM,
    TUI_S_BOLD,
    TUI_S_TITLE,     /* panel titles */
    TUI_S_FOCUS,     /* the focused panel's frame */
    TUI_S_HEADER,    /* header labels */
    TUI_S_GOOD,
    TUI_S_WARN,
    TUI_S_BAD,
    TUI_S_AMX,       /* bar segments by ISA class */
    TUI_S_AVX512,
    TUI_S_OTHER,
    TUI_S_BAR,       /* plain utilisation bars */
    TUI_S_SPARK,
    TUI_S_NA,        /* "n/a — reason" */
    TUI_S_KEY,       /* key names in the footer and help */
    TUI_S_SELECT,    /* the selected table row */
    TUI_NSTYLES
};

typedef struct tui_cell {
    uint32_t ch;     /* Unicode code point; always one column wide */
    uint8_t style;
} tui_cell;

typedef struct tui_canvas {
    int w, h;
    tui_cell *cells;
    bool utf8;       /* false: ASCII glyphs only (bars, sparklines, frames) */
    bool mono;       /* no colour: bar segments differ by glyph, not by colour */
} tui_canvas;

typedef struct tui_rect {
    int x, y, w, h;
} tui_rect;

adg_error *tui_canvas_init(tui_canvas *c, int w, int h, bool utf8);
void tui_canvas_free(tui_canvas *c);
void tui_canvas_clear(tui_canvas *c);
/* Writes UTF-8 text at (x, y), at most maxw columns (<= 0: to the edge); a longer text is
 * cut with '~'.  Returns the columns written. */
int tui_put(tui_canvas *c, int x, int y, int maxw, int style, const char *text);
__attribute__((format(printf, 6, 7)))
int tui_printf(tui_canvas *c, int x, int y, int maxw, int style, const char *fmt, ...);
void tui_fill(tui_canvas *c, tui_rect r, uint32_t ch, int style);
/* A frame with a title; the inside is r shrunk by one on each side. */
void tui_box(tui_canvas *c, tui_rect r, const char *title, bool focused);
tui_rect tui_inner(tui_rect r);
/* Row y as UTF-8 (trailing blanks removed) into buf. */
void tui_canvas_row(const tui_canvas *c, int y, char *buf, size_t len);
/* The whole canvas as text lines (heap string). */
char *tui_canvas_text(const tui_canvas *c);

/* ---- widgets (widget_*.c) ---- */

typedef struct tui_segment {
    double value;    /* in the bar's units */
    int style;
} tui_segment;

/* The glyph of bar segment i (what the legend shows next to its label). */
uint32_t tui_seg_glyph(const tui_canvas *c, size_t i);
/* A horizontal bar of w columns for segments stacked from the left, full = max.  UTF-8
 * uses eighth blocks for the last partial cell; ASCII uses one character per segment
 * ('#', '=', '-', ...). */
void tui_bar(tui_canvas *c, int x, int y, int w, const tui_segment *seg, size_t nseg, double max);

/* Resamples a series into w buckets covering (t_end - span, t_end]: each bucket is the
 * mean of its points, NaN when it has none.  Points must be sorted by time. */
void tui_spark_resample(const adg_point *p, size_t n, uint64_t t_end, uint64_t span, double *out, int w);
/* Draws w buckets (NaN = blank) scaled to [lo, hi] with ▁..█ (ASCII: " .:-=+*#%@"). */
void tui_spark(tui_canvas *c, int x, int y, int w, const double *v, double lo, double hi, int style);

#define TUI_TABLE_MAXCOLS 8
typedef struct tui_column {
    const char *title;
    int width;       /* <= 0: takes the remaining width */
    bool numeric;    /* right-aligned; sorted largest first */
} tui_column;

typedef struct tui_row {
    char cell[TUI_TABLE_MAXCOLS][96];
    double key[TUI_TABLE_MAXCOLS];  /* sort keys of numeric columns */
    int style;
} tui_row;

typedef struct tui_table {
    const tui_column *cols;
    int ncols;
    tui_row *rows;
    size_t nrows;
    int sort_col;
    bool reverse;
    int scroll;      /* first row shown */
} tui_table;

/* Sorts rows by sort_col (numeric: largest first, text: A..Z; reverse flips). */
void tui_table_sort(tui_table *t);
/* Draws the header line and the rows that fit; the sort column's title is marked. */
void tui_table_draw(tui_canvas *c, tui_rect r, const tui_table *t, bool focused);

/* ---- layout (tui_layout.c) ---- */

/* In screen order: Tab walks them in this order. */
enum tui_panel_id { TUI_P_CPU, TUI_P_MEM, TUI_P_GPU, TUI_P_HIST, TUI_P_HOT, TUI_NPANELS };

typedef struct tui_layout {
    bool too_small;
    tui_rect header, footer;
    tui_rect panel[TUI_NPANELS];
} tui_layout;

#define TUI_MIN_W 60
#define TUI_MIN_H 18
/* Places the header, the panels and the footer on a w x h screen; cpu_rows is the number
 * of bar lines the CPU panel would like (cores or nodes plus its share lines). */
void tui_layout_compute(int w, int h, int cpu_rows, tui_layout *out);

/* ---- metric names (tui_names.c): the one table of panel -> metric ---- */

enum tui_metric_key {
    TUI_M_CPU_UTIL,      /* per CPU */
    TUI_M_WL_CPU,        /* the workload's CPU time */
    TUI_M_ISA_AMX,
    TUI_M_ISA_AVX512,
    TUI_M_ISA_AVX2,
    TUI_M_ISA_SSE,
    TUI_M_ISA_SCALAR,
    TUI_M_ISA_UNKNOWN,
    TUI_M_AMX_BUSY,
    TUI_M_AMX_OPS,
    TUI_M_IPC,
    TUI_M_MEM_RD,
    TUI_M_MEM_WR,
    TUI_M_MEM_MBM,
    TUI_M_NUMA_RES,
    TUI_M_NUMA_THR,
    TUI_M_GPU_BUSY,
    TUI_M_GPU_MEM,
    TUI_M_GPU_MEM_TOTAL,
    TUI_M_GPU_KTIME,     /* per kernel */
    TUI_M_GPU_H2D,
    TUI_M_GPU_D2H,
    TUI_M_GPU_LAUNCHES,
    TUI_M_GPU_ERRORS,
    TUI_M_GPU_UTIL,      /* NVML: any process's kernels */
    TUI_M_GPU_MEM_UTIL,
    TUI_M_GPU_POWER,
    TUI_M_GPU_TEMP,
    TUI_M_GPU_CLOCK,
    TUI_M_GPU_PCIE_RX,
    TUI_M_GPU_PCIE_TX,
    TUI_M_GPU_WL_MEM,    /* the workload's processes' device memory */
    TUI_M_ENGINE_TPS,
    TUI_M_WL_TPS,
    TUI_NMETRICS
};

typedef struct tui_metric_ref {
    int panel;              /* enum tui_panel_id, or -1 for the header */
    const char *name;       /* the bus name */
    const char *collector;  /* the collector expected to publish it (for unavailable reasons) */
    const char *label;      /* short label on screen */
    const char *collector2; /* another collector that may publish it (NULL: none) */
} tui_metric_ref;

extern const tui_metric_ref tui_metrics[TUI_NMETRICS];

/* ---- the application state ---- */

typedef struct tui_replay tui_replay;

typedef struct tui_value {
    char panel[8];
    char metric[48];
    char instance[64];
    char unit[12];
    double value;
} tui_value;

typedef struct tui_app {
    adg_bus *bus;           /* what the panels read: the session's bus, or the replay's */
    tui_replay *replay;     /* NULL when live */
    json_t *machine;        /* record sections (owned references, may be NULL) */
    json_t *workload;
    json_t *hot;            /* hot_functions; live: filled when the run ends */
    json_t *config;
    json_t *gpus;           /* [{instance, name, ...}]: NVML's devices (bus snapshot live, record's nvml section) */
    char source[512];       /* "replay RUN.json" / "live: COMMAND" */
    bool live;
    bool finished;          /* live: the workload ended; replay: reached the end */
    bool failed;            /* live: the session failed or was interrupted (the loop leaves) */
    bool quit_key;          /* the user quit with q or Ctrl-C (not a signal) */
    int quit_code;          /* exit code asked by the key: 0 for q, 130 for Ctrl-C */
    char finish_note[1024];

    uint64_t t_ns;          /* the instant the screen shows (bus time) */
    bool paused;
    bool help;
    int focus;              /* enum tui_panel_id */
    int sort[TUI_NPANELS];
    bool reverse[TUI_NPANELS];
    int scroll[TUI_NPANELS];
    uint64_t hist_span_ns;  /* sparkline window */

    char phase[32];         /* "prompt", "generation", "" */
    unsigned gpu_errors;    /* "cuda-error" and "crash" events seen */
    char last_gpu_error[160];
    char last_warning[256]; /* the latest "warning" event (NUMA placement, ...) */
    /* Live: the blocking re-run that confirms a CUDA fault's kernel (profiler/crash_confirm.h). */
    bool confirming;        /* it runs now */
    char confirm_note[256]; /* short, for the GPU panel: "confirming ..." then what it found; "" when not run */
    char confirm_summary[768]; /* the full sentence (footer, snapshot) */
    size_t events_seen;
    json_t *unavail;        /* the bus's unavailable list, refreshed every frame */

    adg_ceilings ceil;
    bool have_ceil;

    char status[1024];      /* footer message (snapshot path, errors) */
    uint64_t status_until;

    /* Filled while drawing: what the screen shows, for snapshots. */
    tui_value *values;
    size_t nvalues, capvalues;

    const char *snapshot_dir;
} tui_app;

void tui_app_init(tui_app *a);
void tui_app_free(tui_app *a);

/* Data access by name (tui_data.c). */
int tui_metric_id(tui_app *a, int key);   /* -1 when no collector registered it */
/* The value shown for (metric, instance) at a->t_ns; false when none yet. */
bool tui_value_at(tui_app *a, int key, const char *instance, double *v);
/* Instances of a metric in natural order (cpu2 before cpu10); free with adg_bus_free_names. */
size_t tui_instances(tui_app *a, int key, char ***names);
/* Why a metric shows no value: the record's unavailable entry for it or its collector,
 * or a sentence saying no collector published it.  Returns buf. */
const char *tui_na_reason(tui_app *a, int key, char *buf, size_t len);
const char *tui_metric_unit(tui_app *a, int key);
/* Sparkline buckets for a metric (summed over instances when instance is NULL and the
 * metric has several); returns false when it has no points. */
bool tui_history(tui_app *a, int key, const char *instance, double *out, int w, double *maxv);
void tui_note_value(tui_app *a, int panel, int key, const char *instance, double v);
/* The latest tokens/s (engine, else the workload's output) and its instance ("tg64"). */
bool tui_latest_tokens(tui_app *a, char *label, size_t llen, double *v);
/* Follows phase events ("phase" prompt/generation begin/end) published so far. */
void tui_track_phase(tui_app *a);

/* Number formatting: "12.3 GB/s", "486 MiB", "1.95 Tops/s". */
const char *tui_fmt_rate(double bps, char *buf, size_t len);
const char *tui_fmt_ops(double ops, char *buf, size_t len);

/* ---- panels (panel_*.c): each draws itself into r ---- */

void tui_panel_header(tui_app *a, tui_canvas *c, tui_rect r);
void tui_panel_cpu(tui_app *a, tui_canvas *c, tui_rect r, bool focused);
void tui_panel_mem(tui_app *a, tui_canvas *c, tui_rect r, bool focused);
void tui_panel_gpu(tui_app *a, tui_canvas *c, tui_rect r, bool focused);
void tui_panel_hot(tui_app *a, tui_canvas *c, tui_rect r, bool focused);
void tui_panel_hist(tui_app *a, tui_canvas *c, tui_rect r, bool focused);
void tui_panel_footer(tui_app *a, tui_canvas *c, tui_rect r);
void tui_panel_help(tui_app *a, tui_canvas *c);
/* Lines the CPU panel would like (for the layout). */
int tui_cpu_rows_wanted(tui_app *a);
/* Sort columns of the panels that have tables (0 for the others). */
int tui_panel_sort_columns(int panel);

/* Draws the whole screen into c (tui_render.c). */
void tui_render(tui_app *a, tui_canvas *c);

/* ---- replay (tui_replay.c) ---- */

/* Loads and validates a run record and prepares to publish its samples on `view` (which
 * gets the record's registry and unavailable list at once). */
adg_error *tui_replay_open(const char *path, double speed, adg_bus *view, tui_replay **out);
void tui_replay_free(tui_replay *r);
json_t *tui_replay_record(tui_replay *r);         /* borrowed */
/* Moves the cursor by wall_ns x speed (capped at the end) and publishes every sample and
 * event up to it.  Returns the cursor (record time). */
uint64_t tui_replay_advance(tui_replay *r, uint64_t wall_ns);
uint64_t tui_replay_cursor(const tui_replay *r);
uint64_t tui_replay_end(const tui_replay *r);
bool tui_replay_done(const tui_replay *r);
double tui_replay_speed(const tui_replay *r);
void tui_replay_set_speed(tui_replay *r, double speed);
/* Record time reached after wall_ns of playing at speed from cursor (pure; for tests). */
uint64_t tui_replay_step(uint64_t cursor, uint64_t end, uint64_t wall_ns, double speed);

/* ---- snapshot (tui_snapshot.c) ---- */

#define TUI_SNAPSHOT_SCHEMA "amxdiag.top-snapshot/1"
/* The JSON snapshot of the view last drawn into c (new reference). */
json_t *tui_snapshot_json(tui_app *a, const tui_canvas *c);
/* Writes DIR/amxdiag-top-<time>.md and .json; *md_path gets the Markdown path (heap). */
adg_error *tui_snapshot_write(tui_app *a, const tui_canvas *c, const char *dir, char **md_path);

#endif
