/* The header: machine (CPU model, AMX state, GPUs), workload, phase, elapsed, tokens/s. */
#include <stdio.h>
#include <string.h>

#include "tui/tui_internal.h"

static bool has_flag(json_t *flags, const char *f)
{
    size_t i;
    json_t *v;
    json_array_foreach(flags, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), f)) return true;
    return false;
}

static void amx_state(tui_app *a, char *buf, size_t len)
{
    json_t *flags = json_object_get(a->machine, "cpu_flags");
    if (!json_is_array(flags)) {
        snprintf(buf, len, "AMX: unknown (no CPU flags recorded)");
        return;
    }
    if (!has_flag(flags, "amx_tile")) {
        snprintf(buf, len, "AMX: absent");
        return;
    }
    snprintf(buf, len, "AMX: tile%s%s%s", has_flag(flags, "amx_int8") ? "+int8" : "",
             has_flag(flags, "amx_bf16") ? "+bf16" : "", has_flag(flags, "amx_fp16") ? "+fp16" : "");
}

static void gpus(tui_app *a, char *buf, size_t len)
{
    json_t *g = json_object_get(a->machine, "gpus");
    if (!json_is_array(g) || !json_array_size(g))
        g = a->gpus; /* NVML's device list */
    if (json_is_array(g) && json_array_size(g)) {
        json_t *first = json_array_get(g, 0);
        const char *name = json_string_value(json_object_get(first, "name"));
        snprintf(buf, len, "GPU: %zux %s", json_array_size(g), name ? name : "?");
        return;
    }
    char **names;
    int key = TUI_M_GPU_BUSY;
    size_t n = tui_instances(a, key, &names);
    if (n)
        snprintf(buf, len, "GPU: %zu active", n);
    else
        snprintf(buf, len, "GPU: no activity seen");
    adg_bus_free_names(names, n);
}

void tui_panel_header(tui_app *a, tui_canvas *c, tui_rect r)
{
    tui_fill(c, r, ' ', TUI_S_HEADER);
    const char *model = json_string_value(json_object_get(a->machine, "cpu_model"));
    json_t *ncpu = json_object_get(a->machine, "logical_cpus"), *nodes = json_object_get(a->machine, "numa_nodes");
    char amx[64], gpu[96], line[1024];
    amx_state(a, amx, sizeof amx);
    gpus(a, gpu, sizeof gpu);
    /* The model string is the longest part: it goes last and is the one cut at 80 columns. */
    int x = tui_put(c, r.x, r.y, 0, TUI_S_TITLE, "amxdiag top");
    snprintf(line, sizeof line, " | %s | %s | %s", amx, gpu, model && *model ? model : "CPU model unknown");
    if (json_is_integer(ncpu))
        snprintf(line + strlen(line), sizeof line - strlen(line), ", %lld CPUs", (long long)json_integer_value(ncpu));
    if (json_is_integer(nodes))
        snprintf(line + strlen(line), sizeof line - strlen(line), ", %lld node%s", (long long)json_integer_value(nodes),
                 json_integer_value(nodes) == 1 ? "" : "s");
    tui_put(c, r.x + x, r.y, r.w - x, TUI_S_HEADER, line);

    /* Line 2: the run. */
    char tl[64] = "", el[64], ph[64];
    double tps = 0;
    bool have_tps = tui_latest_tokens(a, tl, sizeof tl, &tps);
    if (have_tps)
        tui_note_value(a, -1, tui_metric_id(a, TUI_M_ENGINE_TPS) >= 0 ? TUI_M_ENGINE_TPS : TUI_M_WL_TPS, tl, tps);
    if (a->replay)
        snprintf(el, sizeof el, "%.1f/%.1f s x%g", (double)a->t_ns * 1e-9, (double)tui_replay_end(a->replay) * 1e-9,
                 tui_replay_speed(a->replay));
    else
        snprintf(el, sizeof el, "%.1f s", (double)a->t_ns * 1e-9);
    snprintf(ph, sizeof ph, "%s", a->phase[0] ? a->phase : "-");
    x = 0;
    if (a->paused)
        x += tui_put(c, r.x, r.y + 1, 0, TUI_S_WARN, "PAUSED ");
    if (a->finished)
        x += tui_put(c, r.x + x, r.y + 1, 0, TUI_S_GOOD, a->replay ? "END " : "DONE ");
    x += tui_printf(c, r.x + x, r.y + 1, 0, TUI_S_BOLD, "%s", el);
    x += tui_printf(c, r.x + x, r.y + 1, 0, TUI_S_HEADER, " | phase %s | ", ph);
    if (have_tps)
        x += tui_printf(c, r.x + x, r.y + 1, 0, TUI_S_BOLD, "%.1f t/s%s%s%s", tps, tl[0] ? " (" : "", tl,
                        tl[0] ? ")" : "");
    else
        x += tui_put(c, r.x + x, r.y + 1, 0, TUI_S_NA, "t/s n/a");
    tui_put(c, r.x + x, r.y + 1, r.w - x, TUI_S_HEADER, " | ");
    x += 3;
    tui_put(c, r.x + x, r.y + 1, r.w - x, TUI_S_HEADER, a->source);
    if (r.h >= 3) {
        char why[256];
        if (a->finish_note[0])
            tui_put(c, r.x, r.y + 2, r.w, TUI_S_DIM, a->finish_note);
        else if (!have_tps)
            tui_printf(c, r.x, r.y + 2, r.w, TUI_S_NA, "tokens/s: %s", tui_na_reason(a, TUI_M_WL_TPS, why, sizeof why));
    }
}
