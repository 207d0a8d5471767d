# Test programs of the profiler: functions with known ISA classes (classified statically,
# never executed: AMX code builds and tests on machines without AMX) and a workload that
# spins in known functions, exits, crashes or sleeps on request.
set(PROF_ISA_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/isa)
set(PROF_ISA_FLAGS -O2 -fno-inline -mamx-tile -mamx-int8 -mavx512f -mavx512vnni -mavxvnni -mavx2 -mfma
    -fvisibility=hidden)

# Shared library (PIC) with .symtab, and a stripped copy (only .dynsym left).
add_library(prof_isa_fixture SHARED ${PROF_ISA_DIR}/isa_funcs.c)
target_compile_options(prof_isa_fixture PRIVATE ${PROF_ISA_FLAGS})
add_library(prof_isa_fixture_stripped SHARED ${PROF_ISA_DIR}/isa_funcs.c)
target_compile_options(prof_isa_fixture_stripped PRIVATE ${PROF_ISA_FLAGS})
target_link_options(prof_isa_fixture_stripped PRIVATE -s)
# The sanitizers would instrument the fixtures' code with their own calls: keep them plain.
foreach(t prof_isa_fixture prof_isa_fixture_stripped)
  target_compile_options(${t} PRIVATE -fno-sanitize=all)
  target_link_options(${t} PRIVATE -fno-sanitize=all)
endforeach()

# The workload (PIE executable).
add_executable(prof_spin ${PROF_ISA_DIR}/spin.c)
target_compile_options(prof_spin PRIVATE -O2 -fno-sanitize=all)
target_link_options(prof_spin PRIVATE -fno-sanitize=all -pie)
target_link_libraries(prof_spin PRIVATE Threads::Threads)

if(TARGET test_prof_isa)
  add_dependencies(test_prof_isa prof_isa_fixture prof_isa_fixture_stripped)
  target_compile_definitions(test_prof_isa PRIVATE
      PROF_ISA_FIXTURE="$<TARGET_FILE:prof_isa_fixture>"
      PROF_ISA_FIXTURE_STRIPPED="$<TARGET_FILE:prof_isa_fixture_stripped>")
endif()
if(TARGET test_prof_session)
  add_dependencies(test_prof_session prof_spin)
  target_compile_definitions(test_prof_session PRIVATE PROF_SPIN="$<TARGET_FILE:prof_spin>")
endif()

# The int8 AMX block-step breakdown (tests/device/amx_steps.sh): built everywhere, run where
# AMX is usable.
add_executable(amx_steps ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/amx/amx_steps.c)
target_compile_options(amx_steps PRIVATE -O2 -mavx512f -mamx-tile -mamx-int8 -fno-sanitize=all)
target_link_options(amx_steps PRIVATE -fno-sanitize=all)
