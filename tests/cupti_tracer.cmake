# The tracer's activity-buffer handling (profiler/cupti_tracer.c) against a stand-in
# libcupti that hands buffers back the ways the tracer must survive (twice, not ours), with
# the flushes during the run and the exit-flush variants.
if(CUPTI_INCLUDE_DIR AND CUPTI_META_DIR AND NOT AMXDIAG_CUDA STREQUAL "OFF" AND TARGET test_cupti_tracer)
  add_library(fake_act_cupti SHARED ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/cupti/fake_act_cupti.c)
  target_include_directories(fake_act_cupti PRIVATE ${CMAKE_SOURCE_DIR} SYSTEM ${CUPTI_INCLUDE_DIR})
  set_target_properties(fake_act_cupti PROPERTIES C_VISIBILITY_PRESET hidden LIBRARY_OUTPUT_DIRECTORY
                                                  ${CMAKE_BINARY_DIR}/tests)
  add_dependencies(test_cupti_tracer fake_act_cupti)
  target_compile_definitions(test_cupti_tracer PRIVATE ADG_FAKE_ACT_CUPTI="$<TARGET_FILE:fake_act_cupti>")
endif()
