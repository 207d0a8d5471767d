# GPU tracing (profiler/cupti_*, profiler/inject): amxdiag loads libamxdiag-inject.so from
# next to its binary, so building amxdiag builds the library.  With nvcc, a small CUDA
# program (runtime API) that the device script profiles through injection, with an
# optional planted fault.
if(TARGET amxdiag AND TARGET amxdiag_inject)
  add_dependencies(amxdiag amxdiag_inject)
endif()
if(AMXDIAG_HAVE_NVCC)
  set(ADG_CUPTI_PROG_SRC ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/cupti/cupti_prog.cu)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/tests/cupti_prog
                     COMMAND ${NVCC_EXECUTABLE} -O2 -gencode arch=compute_90,code=sm_90
                             -gencode arch=compute_120,code=compute_120 -o ${CMAKE_BINARY_DIR}/tests/cupti_prog
                             ${ADG_CUPTI_PROG_SRC}
                     DEPENDS ${ADG_CUPTI_PROG_SRC} COMMENT "nvcc test program cupti_prog" VERBATIM)
  add_custom_target(adg_cupti_prog ALL DEPENDS ${CMAKE_BINARY_DIR}/tests/cupti_prog)
endif()
# A stand-in CUDA program that speaks the injection protocol (or loads the injection
# library as the driver would): the collector's tests on machines without a GPU.
add_executable(cupti_fake_app ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/cupti/fake_app.c
               ${CMAKE_SOURCE_DIR}/profiler/cupti_proto.c)
target_link_libraries(cupti_fake_app PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(cupti_fake_app PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
