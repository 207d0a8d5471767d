# Fatbin fixtures made by nvcc at build time (only when the toolkit is present): the
# parser's tests and `probe --binary` read them from <build>/tests/fatbin.  A few small
# ones are also committed in tests/fixtures/fatbin for machines without nvcc.
if(AMXDIAG_HAVE_NVCC)
  set(ADG_FB_SRC ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/fatbin/fixture.cu)
  set(ADG_FB_DIR ${CMAKE_BINARY_DIR}/tests/fatbin)
  file(MAKE_DIRECTORY ${ADG_FB_DIR})
  # name -> nvcc code-generation options
  # name:nvcc code-generation options (spaces separate the options)
  set(ADG_FB_SPECS
      "sm_120:-gencode arch=compute_120,code=sm_120"
      "sm_120a:-gencode arch=compute_120a,code=sm_120a"
      "compute_120:-gencode arch=compute_120,code=compute_120"
      "sm_90_compute_90:-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
      "compress_size:-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -compress-mode=size"
      "compress_speed:-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -compress-mode=speed"
      "compress_none:-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -no-compress")
  set(ADG_FB_MANY "")
  foreach(a 75 80 86 87 88 89 90 100 103 110 120 121)
    list(APPEND ADG_FB_MANY "-gencode;arch=compute_${a},code=sm_${a}")
  endforeach()
  list(APPEND ADG_FB_MANY "-gencode;arch=compute_121,code=compute_121")
  set(ADG_FB_OUTPUTS "")
  foreach(spec ${ADG_FB_SPECS})
    string(FIND "${spec}" ":" colon)
    string(SUBSTRING "${spec}" 0 ${colon} name)
    math(EXPR colon "${colon} + 1")
    string(SUBSTRING "${spec}" ${colon} -1 opts)
    separate_arguments(parts UNIX_COMMAND "${opts}")
    add_custom_command(OUTPUT ${ADG_FB_DIR}/${name}.fatbin
                       COMMAND ${NVCC_EXECUTABLE} -fatbin ${parts} -o ${ADG_FB_DIR}/${name}.fatbin ${ADG_FB_SRC}
                       DEPENDS ${ADG_FB_SRC} COMMENT "nvcc fixture ${name}.fatbin" VERBATIM)
    list(APPEND ADG_FB_OUTPUTS ${ADG_FB_DIR}/${name}.fatbin)
  endforeach()
  add_custom_command(OUTPUT ${ADG_FB_DIR}/many_arch.fatbin
                     COMMAND ${NVCC_EXECUTABLE} -fatbin ${ADG_FB_MANY} -o ${ADG_FB_DIR}/many_arch.fatbin ${ADG_FB_SRC}
                     DEPENDS ${ADG_FB_SRC} COMMENT "nvcc fixture many_arch.fatbin" VERBATIM)
  add_custom_command(OUTPUT ${ADG_FB_DIR}/sm_120a.cubin
                     COMMAND ${NVCC_EXECUTABLE} -cubin -gencode arch=compute_120a,code=sm_120a
                             -o ${ADG_FB_DIR}/sm_120a.cubin ${ADG_FB_SRC}
                     DEPENDS ${ADG_FB_SRC} COMMENT "nvcc fixture sm_120a.cubin" VERBATIM)
  set(ADG_FB_HOST ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/fatbin/fixture_host.cu)
  add_custom_command(OUTPUT ${ADG_FB_DIR}/fatbin_host_exe
                     COMMAND ${NVCC_EXECUTABLE} -gencode arch=compute_90,code=sm_90
                             -gencode arch=compute_120,code=sm_120 -gencode arch=compute_120,code=compute_120
                             -o ${ADG_FB_DIR}/fatbin_host_exe ${ADG_FB_HOST}
                     DEPENDS ${ADG_FB_HOST} COMMENT "nvcc fixture fatbin_host_exe" VERBATIM)
  list(APPEND ADG_FB_OUTPUTS ${ADG_FB_DIR}/many_arch.fatbin ${ADG_FB_DIR}/sm_120a.cubin ${ADG_FB_DIR}/fatbin_host_exe)
  add_custom_target(adg_fatbin_fixtures ALL DEPENDS ${ADG_FB_OUTPUTS})
  if(TARGET test_fatbin)
    add_dependencies(test_fatbin adg_fatbin_fixtures)
  endif()
endif()
