# The row-scaled kernel's 2x2 step taken apart (tests/fixtures/amx/rowq_steps.c, run by
# tests/device/amx_rowq.sh): built everywhere, run where AMX is usable.
add_executable(rowq_steps ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/amx/rowq_steps.c)
target_compile_options(rowq_steps PRIVATE -O2 -mavx512f -mamx-tile -mamx-int8 -fno-sanitize=all)
target_link_options(rowq_steps PRIVATE -fno-sanitize=all)
