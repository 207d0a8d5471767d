# --gpu-metrics (profiler/cupti_range*.c): a stand-in libcupti for the Range Profiler
# plumbing (test_cupti_range loads it the way amxdiag loads libcupti), and a C++ check that
# profiler/cupti_range_host.h mirrors the toolkit's cupti_profiler_host.h (a C++-only
# header) member for member.
if(CUPTI_INCLUDE_DIR AND CUPTI_META_DIR AND NOT AMXDIAG_CUDA STREQUAL "OFF" AND TARGET test_cupti_range)
  add_library(fake_range_cupti SHARED ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/cupti/fake_range_cupti.c)
  target_include_directories(fake_range_cupti PRIVATE ${CMAKE_SOURCE_DIR} SYSTEM ${CUPTI_INCLUDE_DIR})
  set_target_properties(fake_range_cupti PROPERTIES C_VISIBILITY_PRESET hidden LIBRARY_OUTPUT_DIRECTORY
                                                    ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(test_cupti_range fake_range_cupti)
  target_compile_definitions(test_cupti_range PRIVATE ADG_FAKE_RANGE_CUPTI="$<TARGET_FILE:fake_range_cupti>")

  find_program(ADG_CXX NAMES c++ g++ clang++)
  if(ADG_CXX)
    add_test(NAME unit.cupti_host_layout
             COMMAND ${ADG_CXX} -std=c++17 -fsyntax-only -I${CMAKE_SOURCE_DIR} -isystem ${CUPTI_INCLUDE_DIR}
                     ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/cupti/host_layout_check.cpp)
  endif()
endif()
