/* amxdiag top's building blocks, rendered into a canvas: bars, sparklines (resampling
 * and glyphs), tables (sorting, scrolling), frames, text cutting, and the layout math. */
#include "adg_test.h"

#include <locale.h>
#include <math.h>
#include <string.h>

#include "tui/tui_internal.h"

static char *row_of(tui_canvas *c, int y)
{
    static char buf[4096];
    tui_canvas_row(c, y, buf, sizeof buf);
    return buf;
}

static void test_put_cuts_and_sanitises(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 12, 2, false));
    assert_int_equal(tui_put(&c, 0, 0, 6, TUI_S_NORMAL, "abcdefghij"), 6);
    assert_string_equal(row_of(&c, 0), "abcde~");
    /* Control characters become blanks; non-ASCII in an ASCII canvas becomes '?'. */
    tui_put(&c, 0, 1, 0, TUI_S_NORMAL, "a\tb\xc3\xa9z");
    assert_string_equal(row_of(&c, 1), "a b?z");
    /* Off-canvas writes are ignored, not crashes. */
    assert_int_equal(tui_put(&c, 0, 5, 0, TUI_S_NORMAL, "x"), 0);
    assert_int_equal(tui_put(&c, 20, 0, 0, TUI_S_NORMAL, "x"), 0);
    tui_canvas_free(&c);
}

static void test_bar_eighths_utf8(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 10, 1, true));
    tui_segment s = {50, TUI_S_BAR};
    tui_bar(&c, 0, 0, 10, &s, 1, 100);
    /* 5 full cells, 5 empty */
    for (int i = 0; i < 5; i++)
        assert_int_equal(c.cells[i].ch, 0x2588);
    for (int i = 5; i < 10; i++)
        assert_int_equal(c.cells[i].ch, 0x2591);
    /* 12.5% of 10 cells = 1.25 cells: one full and a quarter block (U+258E) */
    s.value = 12.5;
    tui_bar(&c, 0, 0, 10, &s, 1, 100);
    assert_int_equal(c.cells[0].ch, 0x2588);
    assert_int_equal(c.cells[1].ch, 0x258E);
    /* Over the maximum: clamped to the width. */
    s.value = 250;
    tui_bar(&c, 0, 0, 10, &s, 1, 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(c.cells[i].ch, 0x2588);
    tui_canvas_free(&c);
}

static void test_bar_stacked_ascii_and_mono(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 20, 1, false));
    tui_segment seg[] = {{50, TUI_S_AMX}, {25, TUI_S_AVX512}, {25, TUI_S_OTHER}};
    tui_bar(&c, 0, 0, 20, seg, 3, 100);
    assert_string_equal(row_of(&c, 0), "##########=====-----");
    tui_canvas_free(&c);

    ADG_ASSERT_OK(tui_canvas_init(&c, 8, 1, true));
    c.mono = true;
    tui_bar(&c, 0, 0, 8, seg, 3, 100);
    assert_int_equal(c.cells[0].ch, 0x2588);
    assert_int_equal(c.cells[4].ch, 0x2593);
    assert_int_equal(c.cells[6].ch, 0x2592);
    assert_int_equal(c.cells[0].style, TUI_S_AMX);
    assert_int_equal(c.cells[4].style, TUI_S_AVX512);
    assert_int_equal(tui_seg_glyph(&c, 1), 0x2593);
    tui_canvas_free(&c);
}

static void test_bar_zero_max_and_nan(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 6, 1, false));
    tui_segment s = {NAN, TUI_S_BAR};
    tui_bar(&c, 0, 0, 6, &s, 1, 100);
    assert_string_equal(row_of(&c, 0), "......");
    s.value = 10;
    tui_bar(&c, 0, 0, 6, &s, 1, 0);
    assert_string_equal(row_of(&c, 0), "......");
    tui_canvas_free(&c);
}

static void test_spark_resample(void **state)
{
    (void)state;
    /* Points every 1 s from 1 to 8 s; 4 buckets over (0, 8 s]: two points each. */
    adg_point p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (adg_point){(uint64_t)(i + 1) * 1000000000ull, (double)(i + 1)};
    double out[4];
    tui_spark_resample(p, 8, 8000000000ull, 8000000000ull, out, 4);
    assert_float_equal(out[0], 1.5, 1e-9);
    assert_float_equal(out[1], 3.5, 1e-9);
    assert_float_equal(out[2], 5.5, 1e-9);
    assert_float_equal(out[3], 7.5, 1e-9);
    /* A window (2 s, 6 s] ignores earlier and later points. */
    tui_spark_resample(p, 8, 6000000000ull, 4000000000ull, out, 4);
    for (int i = 0; i < 4; i++)
        assert_float_equal(out[i], 3.0 + i, 1e-9);
    /* A window after all points: all NaN. */
    tui_spark_resample(p, 2, 100000000000ull, 8000000000ull, out, 4);
    for (int i = 0; i < 4; i++)
        assert_true(isnan(out[i]));
}

static void test_spark_glyphs(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 4, 2, true));
    double v[4] = {0, NAN, 50, 100};
    tui_spark(&c, 0, 0, 4, v, 0, 100, TUI_S_SPARK);
    assert_int_equal(c.cells[0].ch, 0x2581);
    assert_int_equal(c.cells[1].ch, ' ');
    assert_int_equal(c.cells[2].ch, 0x2585); /* 0.5 * 7 = 3.5 -> 4 */
    assert_int_equal(c.cells[3].ch, 0x2588);
    c.utf8 = false;
    tui_spark(&c, 0, 1, 4, v, 0, 100, TUI_S_SPARK);
    assert_string_equal(row_of(&c, 1), ". +@");
    tui_canvas_free(&c);
}

static const tui_column cols[] = {{"share", 6, true}, {"name", 0, false}};

static void test_table_sort_and_scroll(void **state)
{
    (void)state;
    tui_row rows[3];
    memset(rows, 0, sizeof rows);
    const char *names[] = {"beta", "alpha", "gamma"};
    double keys[] = {20, 50, 30};
    for (int i = 0; i < 3; i++) {
        snprintf(rows[i].cell[0], sizeof rows[i].cell[0], "%.0f%%", keys[i]);
        snprintf(rows[i].cell[1], sizeof rows[i].cell[1], "%s", names[i]);
        rows[i].key[0] = keys[i];
    }
    tui_table t = {cols, 2, rows, 3, 0, false, 0};
    tui_table_sort(&t);
    assert_string_equal(rows[0].cell[1], "alpha");
    assert_string_equal(rows[2].cell[1], "beta");
    t.reverse = true;
    tui_table_sort(&t);
    assert_string_equal(rows[0].cell[1], "beta");
    t.sort_col = 1;
    t.reverse = false;
    tui_table_sort(&t);
    assert_string_equal(rows[0].cell[1], "alpha");
    assert_string_equal(rows[2].cell[1], "gamma");

    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 24, 3, false));
    t.scroll = 1;
    tui_table_draw(&c, (tui_rect){0, 0, 24, 3}, &t, true);
    assert_non_null(strstr(row_of(&c, 0), "namev"));
    assert_non_null(strstr(row_of(&c, 0), "2-3/3"));
    assert_non_null(strstr(row_of(&c, 1), "beta"));
    assert_non_null(strstr(row_of(&c, 2), "gamma"));
    /* Numbers are right-aligned in their column. */
    assert_memory_equal(row_of(&c, 1), "   20%", 6);
    tui_canvas_free(&c);
}

static void test_box_and_text(void **state)
{
    (void)state;
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, 12, 3, false));
    tui_box(&c, (tui_rect){0, 0, 12, 3}, "CPU", false);
    assert_string_equal(row_of(&c, 0), "+- CPU ----+");
    assert_string_equal(row_of(&c, 1), "|          |");
    tui_box(&c, (tui_rect){0, 0, 12, 3}, "CPU", true);
    assert_string_equal(row_of(&c, 2), "+==========+");
    char *text = tui_canvas_text(&c);
    assert_non_null(text);
    assert_int_equal(strlen(text), 3 * 13);
    free(text);
    tui_rect in = tui_inner((tui_rect){0, 0, 12, 3});
    assert_int_equal(in.x, 1);
    assert_int_equal(in.w, 10);
    assert_int_equal(in.h, 1);
    tui_canvas_free(&c);
}

static bool overlap(tui_rect a, tui_rect b)
{
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

static void check_layout(int w, int h, int cpu_rows)
{
    tui_layout l;
    tui_layout_compute(w, h, cpu_rows, &l);
    assert_false(l.too_small);
    tui_rect all[TUI_NPANELS + 2];
    for (int i = 0; i < TUI_NPANELS; i++)
        all[i] = l.panel[i];
    all[TUI_NPANELS] = l.header;
    all[TUI_NPANELS + 1] = l.footer;
    long area = 0;
    for (int i = 0; i < TUI_NPANELS + 2; i++) {
        tui_rect r = all[i];
        assert_true(r.x >= 0 && r.y >= 0 && r.x + r.w <= w && r.y + r.h <= h);
        assert_true(r.w > 0 && r.h > 0);
        area += (long)r.w * r.h;
        for (int j = 0; j < i; j++)
            assert_false(overlap(r, all[j]));
    }
    /* Everything is used: no hole, no overlap. */
    assert_int_equal(area, (long)w * h);
    /* Every panel can show at least its frame and two lines; the hot table three rows. */
    for (int i = 0; i < TUI_NPANELS; i++)
        assert_true(l.panel[i].h >= 4);
    assert_true(l.panel[TUI_P_HOT].h >= 5);
}

static void test_layout(void **state)
{
    (void)state;
    check_layout(80, 24, 12);
    check_layout(80, 24, 200);
    check_layout(81, 25, 3);
    check_layout(120, 40, 20);
    check_layout(200, 60, 10);
    check_layout(200, 60, 120);
    check_layout(TUI_MIN_W, TUI_MIN_H, 8);
    tui_layout l;
    tui_layout_compute(200, 60, 20, &l);
    /* A large screen puts CPU, memory and GPU side by side and gives the CPU panel its rows. */
    assert_int_equal(l.panel[TUI_P_CPU].y, l.panel[TUI_P_GPU].y);
    assert_true(l.panel[TUI_P_CPU].h >= 22);
    tui_layout_compute(80, 24, 12, &l);
    assert_int_equal(l.panel[TUI_P_CPU].w + l.panel[TUI_P_MEM].w, 80);
    tui_layout_compute(59, 24, 12, &l);
    assert_true(l.too_small);
    tui_layout_compute(80, 17, 12, &l);
    assert_true(l.too_small);
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_cuts_and_sanitises),
        cmocka_unit_test(test_bar_eighths_utf8),
        cmocka_unit_test(test_bar_stacked_ascii_and_mono),
        cmocka_unit_test(test_bar_zero_max_and_nan),
        cmocka_unit_test(test_spark_resample),
        cmocka_unit_test(test_spark_glyphs),
        cmocka_unit_test(test_table_sort_and_scroll),
        cmocka_unit_test(test_box_and_text),
        cmocka_unit_test(test_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
