# Fuzz targets (tests/fuzz/fuzz_<target>.c, one LLVMFuzzerTestOneInput each).
#
# Every build replays each target's seed corpus (tests/fuzz/corpus/<target>) and every
# input that once crashed it (tests/fuzz/regressions/<target>) through a plain main()
# (tests/fuzz/replay_main.c): ctest tests fuzz.<target>, under ASan+UBSan in the
# sanitizer build.
#
# A clang build configured with -DAMXDIAG_FUZZ=ON (and -DAMXDIAG_SANITIZE=ON) also
# builds the libFuzzer executables fuzz_<target> (target fuzz_all), with the libraries
# instrumented for coverage; tests/fuzz/run.sh runs them (CI: a short bounded run each,
# docs/reliability.md: the longer campaign).
option(AMXDIAG_FUZZ "Build the libFuzzer targets (clang only)" OFF)

set(ADG_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
file(GLOB ADG_FUZZ_TARGETS CONFIGURE_DEPENDS ${ADG_FUZZ_DIR}/fuzz_*.c)
list(REMOVE_ITEM ADG_FUZZ_TARGETS ${ADG_FUZZ_DIR}/fuzz_util.c)
set(ADG_FUZZ_LIBS adg_tui adg_reports adg_profiler adg_probe adg_kernels adg_common)

add_library(adg_fuzz_util STATIC ${ADG_FUZZ_DIR}/fuzz_util.c)
target_include_directories(adg_fuzz_util PUBLIC ${ADG_FUZZ_DIR})

if(AMXDIAG_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "AMXDIAG_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang")
  endif()
  foreach(lib ${ADG_FUZZ_LIBS} adg_fuzz_util)
    if(TARGET ${lib})
      target_compile_options(${lib} PRIVATE -fsanitize=fuzzer-no-link)
    endif()
  endforeach()
  add_custom_target(fuzz_all)
  foreach(src ${ADG_FUZZ_TARGETS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} EXCLUDE_FROM_ALL ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE adg_fuzz_util ${ADG_FUZZ_LIBS})
    add_dependencies(fuzz_all ${name})
  endforeach()
else()
  foreach(src ${ADG_FUZZ_TARGETS})
    get_filename_component(name ${src} NAME_WE)
    string(REGEX REPLACE "^fuzz_" "" target ${name})
    add_executable(${name}_replay ${src} ${ADG_FUZZ_DIR}/replay_main.c)
    target_link_libraries(${name}_replay PRIVATE adg_fuzz_util ${ADG_FUZZ_LIBS})
    add_test(NAME fuzz.${target}
             COMMAND ${name}_replay ${ADG_FUZZ_DIR}/corpus/${target} ${ADG_FUZZ_DIR}/regressions/${target})
    set_tests_properties(fuzz.${target} PROPERTIES ENVIRONMENT "${ADG_TEST_ENV}" TIMEOUT 300 LABELS fuzz)
  endforeach()
endif()
